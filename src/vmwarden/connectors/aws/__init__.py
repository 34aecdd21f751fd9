"""The AWS EC2 connector (preview): ``aws://REGION[?profile=NAME]``.

Only this package imports boto3/botocore, and only inside functions, so loading the
connector registry never needs the AWS SDK.
"""
