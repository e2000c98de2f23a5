"""A local AWS for red5-rollout: moto's server plus what the runner needs of AWS.

Moto 5.2.5 serves EC2, Auto Scaling, SSM, ELBv2 and IAM, but without time
(everything is ready at once), without instance refreshes, without SSM's
DescribeInstanceInformation, and with a few answers that differ from AWS.
This package patches those into moto's classes, wraps moto's WSGI
application with fault switches and a call log, and starts the server. See
tests/emulator/README.md.
"""
