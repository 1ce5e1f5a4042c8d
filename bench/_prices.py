"""AWS prices the cost benchmark (bench/cost.py) bills with: us-east-1, on-demand / request pricing,
in dollars, each as listed on its AWS pricing page on PRICES_DATE (the page is named beside it).

Only list prices: no free tier is subtracted anywhere (bench/cost.py says where it would apply).
"""

from __future__ import annotations

PRICES_DATE = "2026-12-01"
MONTH_HOURS = 730  # AWS bills monthly terms prorated by the hour over a 730-hour month

# AWS pricing page for Amazon API Gateway, as listed on 2026-12-01: HTTP APIs, first 300 million
# requests a month; a request is metered in 512 KB increments.
HTTP_API_PER_REQUEST = 1.00 / 1e6
HTTP_API_METERED_BYTES = 512 * 1024

# AWS pricing page for AWS Lambda, as listed on 2026-12-01: requests, and duration per GB-second
# (first 6 billion GB-seconds a month) by architecture.
LAMBDA_PER_REQUEST = 0.20 / 1e6
LAMBDA_PER_GB_SECOND = {"arm64": 0.0000133334, "x86_64": 0.0000166667}
# AWS Lambda Developer Guide, "Configuring Lambda function memory", as listed on 2026-12-01: a function
# gets CPU in proportion to its memory, one full vCPU at 1,769 MB.
LAMBDA_MB_PER_VCPU = 1769

# AWS pricing page for Amazon SQS, as listed on 2026-12-01: FIFO queues, first 100 billion requests a
# month; each 64 KB chunk of a request's payload is billed as one request.
SQS_FIFO_PER_REQUEST = 0.50 / 1e6
SQS_CHUNK_BYTES = 64 * 1024

# AWS pricing page for Amazon DynamoDB (on-demand capacity), as listed on 2026-12-01, the prices since
# the on-demand price cut of 2024-11-01: write and read request units, Standard table class storage,
# continuous backups (point-in-time recovery).
DYNAMODB_PER_WRITE_UNIT = 0.625 / 1e6
DYNAMODB_PER_READ_UNIT = 0.125 / 1e6
DYNAMODB_STORAGE_PER_GB_MONTH = 0.25
DYNAMODB_PITR_PER_GB_MONTH = 0.20

# AWS pricing page for AWS Secrets Manager, as listed on 2026-12-01.
SECRETS_MANAGER_PER_SECRET_MONTH = 0.40
SECRETS_MANAGER_PER_CALL = 0.05 / 10_000

# AWS pricing page for AWS Key Management Service, as listed on 2026-12-01: a customer managed key is
# $1 a month; with automatic rotation the first and the second rotation add $1 a month each (so $1 in
# the first year, $2 in the second, $3 from the third on).
KMS_KEY_PER_MONTH = 1.00

# AWS pricing page for Amazon CloudWatch, as listed on 2026-12-01 (paid tier): logs ingested (standard
# class; Lambda's logs as vended logs, first 10 TB), logs stored, custom metrics (first 10,000 a month,
# prorated by the hour, metered only in the hours a metric is sent: a metric is a name with one set of
# dimensions), standard-resolution alarms per metric they evaluate, dashboards.
LOGS_INGESTED_PER_GB = 0.50
LOGS_STORED_PER_GB_MONTH = 0.03
CUSTOM_METRIC_PER_MONTH = 0.30
ALARM_METRIC_PER_MONTH = 0.10
DASHBOARD_PER_MONTH = 3.00
LOG_EVENT_OVERHEAD_BYTES = 26  # CloudWatch Logs bills each log event's message plus 26 bytes

# AWS pricing page for Amazon EventBridge, as listed on 2026-12-01: events published to a custom event
# bus (PutEvents, per 64 KB chunk of an entry); scheduled rules on the default bus are free.
EVENTBRIDGE_PER_EVENT = 1.00 / 1e6

# AWS pricing page for AWS X-Ray, as listed on 2026-12-01: traces recorded.
XRAY_PER_TRACE = 5.00 / 1e6

# The free tier each term would fall under (not subtracted): AWS Free Tier page, as listed on 2026-12-01.
FREE_TIER = {
    "custom metrics": "10 custom metrics a month (per account, shared by every stack)",
    "alarms": "10 standard-resolution alarm metrics a month (per account)",
    "dashboard": "3 dashboards of up to 50 metrics each (per account)",
    "logs": "5 GB of logs ingested and stored a month (per account)",
    "lambda": "1 million requests and 400,000 GB-seconds a month (per account)",
    "sqs": "1 million requests a month (per account)",
    "dynamodb": "25 GB of storage (per account)",
    "kms": "20,000 requests a month; keys are not covered",
    "secrets manager": "none after the 30-day trial of a new secret",
}
