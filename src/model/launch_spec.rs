//! The launch settings a pipeline manages, as a signature: one short hash per field of the
//! rendered `launch` block. The runner records it on what it launches (a template version's
//! instance tags, the group's tags), so that an edited `launch` block is noticed without a
//! new release and the plan can say which fields changed.

use super::Launch;
use std::fmt::Write as _;

/// The fields of `launch` that the signature covers, in the order they are recorded.
pub const LAUNCH_FIELDS: [&str; 6] = [
    "instance_type",
    "security_groups",
    "key_pair",
    "public_ip",
    "volume_size_gb",
    "user_data",
];

/// One 8-hex-digit hash per launch field, e.g.
/// `instance_type:1a2b3c4d security_groups:… user_data:…` (127 characters: it fits a tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSignature {
    fields: Vec<(String, String)>,
}

/// A field that differs between two signatures: its name and, when short enough to show,
/// the value it has now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedField {
    pub field: &'static str,
    pub now: Option<String>,
}

impl LaunchSignature {
    /// The signature of `launch` with its user data rendered as `user_data`.
    pub fn of(launch: &Launch, user_data: &str) -> LaunchSignature {
        let fields = LAUNCH_FIELDS
            .iter()
            .map(|field| {
                let value = field_value(launch, user_data, field);
                (field.to_string(), short_hash(&value))
            })
            .collect();
        LaunchSignature { fields }
    }

    /// Reads a recorded signature; `None` when the text is not one (a tag someone edited).
    pub fn parse(text: &str) -> Option<LaunchSignature> {
        let fields: Vec<(String, String)> = text
            .split_whitespace()
            .map(|pair| {
                let (field, hash) = pair.split_once(':')?;
                let valid = hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit());
                valid.then(|| (field.to_string(), hash.to_ascii_lowercase()))
            })
            .collect::<Option<_>>()?;
        (!fields.is_empty()).then_some(LaunchSignature { fields })
    }

    /// The text recorded in a tag.
    pub fn to_tag(&self) -> String {
        let mut text = String::new();
        for (field, hash) in &self.fields {
            if !text.is_empty() {
                text.push(' ');
            }
            let _ = write!(text, "{field}:{hash}");
        }
        text
    }

    /// One hash of the whole signature: what names a launch configuration made for it.
    pub fn hash(&self) -> String {
        short_hash(&self.to_tag())
    }

    /// The fields of `launch` (whose signature is `self`) that differ from `recorded`; a
    /// field that only one of them has counts as changed.
    pub fn changed_since(&self, recorded: &LaunchSignature, launch: &Launch) -> Vec<ChangedField> {
        LAUNCH_FIELDS
            .iter()
            .filter(|field| self.get(field) != recorded.get(field))
            .map(|field| ChangedField {
                field,
                now: match *field {
                    "user_data" => None,
                    other => Some(field_value(launch, "", other)),
                },
            })
            .collect()
    }

    fn get(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, hash)| hash.as_str())
    }
}

/// How changed fields read in a plan: `launch.instance_type (now m5.xlarge), launch.user_data`.
pub fn describe_changes(changes: &[ChangedField]) -> String {
    changes
        .iter()
        .map(|c| match &c.now {
            Some(now) => format!("launch.{} (now {now})", c.field),
            None => format!("launch.{}", c.field),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn field_value(launch: &Launch, user_data: &str, field: &str) -> String {
    match field {
        "instance_type" => launch.instance_type.clone(),
        "security_groups" => launch.security_groups.join(","),
        "key_pair" => launch.key_pair.clone().unwrap_or_else(|| "none".into()),
        "public_ip" => launch
            .public_ip
            .map_or_else(|| "unset".into(), |p| p.to_string()),
        "volume_size_gb" => launch.volume_size_gb.to_string(),
        "user_data" => user_data.to_string(),
        other => unreachable!("{other} is not a launch field"),
    }
}

/// FNV-1a over `bytes`: stable across builds and platforms, unlike the standard library's
/// hasher (what it names is recorded in AWS and compared by later runs).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn short_hash(text: &str) -> String {
    let hash = fnv1a(text.as_bytes());
    format!("{:08x}", (hash >> 32) ^ (hash & 0xffff_ffff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LaunchTarget, Template};

    fn launch() -> Launch {
        Launch {
            target: LaunchTarget::Template {
                template: "red5pro-sm".into(),
            },
            name: Template::parse("SM-{{ version }}").expect("template"),
            instance_type: "m5.large".into(),
            security_groups: vec!["red5pro-sm-sg".into()],
            key_pair: Some("red5pro-sm-key".into()),
            public_ip: None,
            volume_size_gb: 16,
            user_data: Template::parse("#!/bin/bash").expect("template"),
        }
    }

    #[test]
    fn a_signature_survives_its_tag_and_fits_in_one() {
        let signature = LaunchSignature::of(&launch(), "#!/bin/bash\necho hi\n");
        let tag = signature.to_tag();
        assert!(tag.len() <= 256, "{}", tag.len());
        assert_eq!(LaunchSignature::parse(&tag), Some(signature));
        assert_eq!(LaunchSignature::parse("edited by hand"), None);
        assert_eq!(LaunchSignature::parse(""), None);
    }

    #[test]
    fn only_the_fields_that_changed_are_named_and_user_data_is_not_shown() {
        let before = launch();
        let recorded = LaunchSignature::of(&before, "echo one");
        let mut after = before.clone();
        after.instance_type = "m5.xlarge".into();
        let now = LaunchSignature::of(&after, "echo two");
        let changes = now.changed_since(&recorded, &after);
        assert_eq!(
            describe_changes(&changes),
            "launch.instance_type (now m5.xlarge), launch.user_data"
        );
        assert_ne!(now.hash(), recorded.hash());
        assert!(
            LaunchSignature::of(&before, "echo one")
                .changed_since(&recorded, &before)
                .is_empty()
        );
        // The name template is not a launch setting: renaming changes nothing.
        let mut renamed = before.clone();
        renamed.name = Template::parse("other-{{ version }}").expect("template");
        assert_eq!(LaunchSignature::of(&renamed, "echo one"), recorded);
    }
}
