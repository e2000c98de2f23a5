//! Every pipeline and release of one revision of the repository, checked together.

use super::diagnostic::{Diagnostic, Diagnostics, Location};
use super::pipeline::Pipeline;
use super::release::Release;
use super::select::{desired_release, render};
use time::Date;

/// A file read from the repository: its path inside the repository and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

/// The valid pipelines and releases of one revision, and the problems of the others.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub pipelines: Vec<Pipeline>,
    pub releases: Vec<Release>,
    pub problems: Diagnostics,
}

impl Catalog {
    /// Checks every file, then every pipeline against the releases: that a release is
    /// selected and that its names render within AWS's limits on `date`.
    pub fn check(
        pipelines: &[SourceFile],
        releases: &[SourceFile],
        date: Date,
        commit: &str,
    ) -> Catalog {
        let mut catalog = Catalog::default();
        for file in releases {
            match Release::from_yaml(&file.path, &file.text) {
                Ok(release) => {
                    if let Some(first) = catalog
                        .releases
                        .iter()
                        .find(|r| r.version == release.version)
                    {
                        catalog.problems.push(
                            Diagnostic::new(
                                &file.path,
                                Location::START,
                                format!(
                                    "version {} is also released by {}",
                                    release.version, first.file
                                ),
                            )
                            .with_hint("keep one file per version"),
                        );
                    } else {
                        catalog.releases.push(release);
                    }
                }
                Err(problems) => catalog.problems.extend(problems),
            }
        }
        for file in pipelines {
            match Pipeline::from_yaml(&file.path, &file.text) {
                Ok(pipeline) => {
                    if let Some(other) = catalog.pipelines.iter().find(|p| {
                        p.auto_scaling_group == pipeline.auto_scaling_group
                            && p.region == pipeline.region
                    }) {
                        catalog.problems.push(
                            Diagnostic::new(
                                &file.path,
                                Location::START,
                                format!(
                                    "auto scaling group {} is also rolled by pipeline {}",
                                    pipeline.auto_scaling_group, other.name
                                ),
                            )
                            .with_hint(
                                "one pipeline per Auto Scaling group: two would fight over it",
                            ),
                        );
                        continue;
                    }
                    match desired_release(&pipeline, &catalog.releases) {
                        Ok(release) => {
                            if let Err(problems) = render(&pipeline, release, date, commit) {
                                catalog.problems.extend(problems);
                            }
                        }
                        Err(none) => catalog.problems.push(none.diagnostic(&pipeline)),
                    }
                    catalog.pipelines.push(pipeline);
                }
                Err(problems) => catalog.problems.extend(problems),
            }
        }
        catalog.link_promotions();
        catalog.problems = std::mem::take(&mut catalog.problems).sorted();
        catalog
    }

    /// Checks each `image.from_pipeline` against the pipelines it may name, and notes the
    /// group and region of the one it names: another pipeline, that bakes its own images.
    fn link_promotions(&mut self) {
        let sources: Vec<(String, String, String, bool)> = self
            .pipelines
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    p.region.clone(),
                    p.auto_scaling_group.clone(),
                    p.image.from_pipeline.is_some(),
                )
            })
            .collect();
        let mut problems = Vec::new();
        for pipeline in &mut self.pipelines {
            let Some(promotion) = pipeline.image.from_pipeline.as_mut() else {
                continue;
            };
            let found = sources
                .iter()
                .find(|(name, ..)| *name == promotion.pipeline);
            let problem = match found {
                _ if promotion.pipeline == pipeline.name => Some((
                    format!("image.from_pipeline names this pipeline, {}", pipeline.name),
                    "name the pipeline that bakes the images this one rolls out (staging, say), or remove the line to bake here".to_string(),
                )),
                None => Some((
                    format!("image.from_pipeline names {}, which is no pipeline", promotion.pipeline),
                    format!(
                        "name one of: {}",
                        sources
                            .iter()
                            .map(|(name, ..)| name.as_str())
                            .filter(|name| *name != pipeline.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
                Some((name, _, _, true)) => Some((
                    format!("image.from_pipeline names {name}, which bakes no images of its own: it promotes them too"),
                    "name the pipeline that bakes them".to_string(),
                )),
                Some((_, region, group, _)) => {
                    promotion.group.clone_from(group);
                    promotion.region.clone_from(region);
                    None
                }
            };
            if let Some((message, hint)) = problem {
                problems.push(
                    Diagnostic::new(
                        &pipeline.origin.file,
                        pipeline.origin.from_pipeline_at,
                        message,
                    )
                    .with_hint(hint),
                );
            }
        }
        for problem in problems {
            self.problems.push(problem);
        }
    }

    /// The pipeline name a file under `pipelines/` stands for.
    pub fn pipeline_file_name(path: &str) -> &str {
        super::release::file_stem(path)
    }

    pub fn pipeline(&self, name: &str) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.name == name)
    }
}
