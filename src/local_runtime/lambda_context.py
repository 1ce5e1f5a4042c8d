"""The `context` object a Lambda handler receives, for handlers invoked in-process."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from local_runtime.template import LOCAL_ACCOUNT_ID, LOCAL_REGION, FunctionSpec


@dataclass(slots=True)
class LocalLambdaContext:
    """What Powertools and handlers read from LambdaContext; the deadline is the function's Timeout."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)
    client_context: None = None
    identity: None = None

    @classmethod
    def for_function(cls, stack_name: str, function: FunctionSpec) -> LocalLambdaContext:
        return cls(f"{stack_name}-{function.logical_id}", function.memory_mb, function.timeout)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[{self.function_version}]{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self.started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))
