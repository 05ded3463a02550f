"""Options every AWS output takes for the AWS layer (credentials, STS, retries), declared once:
an output's option table splices :data:`AWS_OPTIONS` in after its own."""

from __future__ import annotations

from rillet.config.options import Option, T

AWS_OPTIONS: tuple[Option, ...] = (
    Option("role_arn", T.STR, None, "IAM role to assume (STS AssumeRole)"),
    Option("external_id", T.STR, None, "external ID for role_arn"),
    Option("sts_endpoint", T.STR, None, "STS endpoint for role_arn"),
    Option("profile", T.STR, None, "profile of the shared config/credentials files"),
    Option("extra_user_agent", T.STR, None, "text appended to the User-Agent"),
    Option("auto_retry_requests", T.BOOL, "true", "retry a request once at once after a "
           "network error"),
)
