"""The shared HTTP layer (see `layer`), its header dialects, the secret scrubber and the one rule for
provider-reported charges."""

from wfbatch.providers.http.charges import parse_charge
from wfbatch.providers.http.headers import RateLimitDialect, RateLimitSnapshot
from wfbatch.providers.http.layer import Classify, HttpAnswer, HttpLayer, HttpLimits, ResponseTooLarge
from wfbatch.providers.http.scrub import REDACTED, Scrubber

__all__ = [
    "REDACTED",
    "Classify",
    "HttpAnswer",
    "HttpLayer",
    "HttpLimits",
    "RateLimitDialect",
    "RateLimitSnapshot",
    "ResponseTooLarge",
    "Scrubber",
    "parse_charge",
]
