"""`CreateImageRequest` (providers.md §5.1) checked the way the real API checks it: the first
problem wins and is reported in OpenAI's error envelope, naming the offending `param`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from wfbatch.sim.images import ImageFormat
from wfbatch.sim.openai.models import (
    BACKGROUNDS,
    GPT_ONLY_FIELDS,
    MODELS,
    MODERATIONS,
    OUTPUT_FORMATS,
    RESPONSE_FORMATS,
    STYLES,
    ModelRules,
    resolved_quality,
    resolved_size,
    supported,
)

KNOWN_FIELDS = (
    "prompt",
    "model",
    "n",
    "size",
    "quality",
    "response_format",
    "output_format",
    "output_compression",
    "background",
    "moderation",
    "style",
    "stream",
    "partial_images",
    "user",
)


@dataclass(frozen=True)
class ApiError:
    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Generation:
    """A valid request, with every default resolved."""

    rules: ModelRules
    prompt: str
    n: int
    width: int
    height: int
    quality: str
    response_format: Literal["url", "b64_json"]
    output_format: ImageFormat
    compression: int
    transparent: bool

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def _invalid_value(param: str, value: Any, allowed: tuple[str, ...]) -> ApiError:
    return ApiError(400, f"Invalid value: '{value}'. {supported(allowed)}", param=param, code="invalid_value")


def _unknown(param: str) -> ApiError:
    return ApiError(400, f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter")


def _type_error(param: str, expected: str, value: Any) -> ApiError:
    got = {bool: "a boolean", int: "an integer", float: "a decimal", str: "a string", list: "an array"}.get(
        type(value), "an object"
    )
    return ApiError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.",
        param=param,
        code="invalid_type",
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(data: dict[str, Any], param: str, allowed: tuple[str, ...]) -> ApiError | None:
    value = data.get(param)
    if value is None:
        return None
    if not isinstance(value, str):
        return _type_error(param, "one of " + ", ".join(allowed), value)
    return None if value in allowed else _invalid_value(param, value, allowed)


def _model(data: dict[str, Any]) -> ModelRules | ApiError:
    name = data.get("model")
    if name is None:
        # Documented default: dall-e-2, unless a GPT-image-only parameter says otherwise.
        gpt_only = any(data.get(f) is not None for f in GPT_ONLY_FIELDS)
        name = "gpt-image-1" if gpt_only else "dall-e-2"
    if not isinstance(name, str):
        return _type_error("model", "a string", name)
    rules = MODELS.get(name)
    return rules if rules is not None else _invalid_value("model", name, tuple(MODELS))


def _prompt(data: dict[str, Any], rules: ModelRules) -> str | ApiError:
    prompt = data.get("prompt")
    if prompt is None:
        return ApiError(
            400, "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter"
        )
    if not isinstance(prompt, str):
        return _type_error("prompt", "a string", prompt)
    if not prompt.strip():
        return ApiError(400, "Invalid 'prompt': empty string.", param="prompt", code="empty_string")
    if len(prompt) > rules.max_prompt:
        return ApiError(
            400,
            f"Invalid 'prompt': string too long. Expected a string with maximum length {rules.max_prompt}, "
            f"but got a string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    return prompt


def _n(data: dict[str, Any], rules: ModelRules) -> int | ApiError:
    n = data.get("n", 1)
    if n is None:
        return 1
    if not _is_int(n):
        return _type_error("n", "an integer", n)
    if n < 1:
        return ApiError(
            400,
            f"Invalid 'n': integer below minimum value. Expected a value >= 1, but got {n} instead.",
            param="n",
            code="integer_below_min_value",
        )
    if rules.max_n == 1 and n != 1:
        return ApiError(400, "You must provide n=1 for this model.", param="n", code="invalid_value")
    if n > rules.max_n:
        return ApiError(
            400,
            f"Invalid 'n': integer above maximum value. Expected a value <= {rules.max_n}, "
            f"but got {n} instead.",
            param="n",
            code="integer_above_max_value",
        )
    return int(n)


def _model_specific(data: dict[str, Any], rules: ModelRules) -> ApiError | None:
    """Parameters only some models take: refused by name on the others, like the real API."""
    if rules.gpt:
        for param in ("response_format", "style"):
            if data.get(param) is not None:
                return _unknown(param)
    else:
        for param in GPT_ONLY_FIELDS:
            if data.get(param) is not None:
                return _unknown(param)
        if rules.name != "dall-e-3" and data.get("style") is not None:
            return _unknown("style")
    return None


def _size(data: dict[str, Any], rules: ModelRules) -> ApiError | None:
    size = data.get("size")
    if size is None:
        return None
    if not isinstance(size, str):
        return _type_error("size", "a string", size)
    problem = rules.size_problem(size)
    if problem is None:
        return None
    return ApiError(400, f"Invalid value: '{size}'. {problem}", param="size", code="invalid_value")


def _gpt_output(data: dict[str, Any]) -> ApiError | None:
    for param, allowed in (
        ("output_format", OUTPUT_FORMATS),
        ("background", BACKGROUNDS),
        ("moderation", MODERATIONS),
    ):
        problem = _choice(data, param, allowed)
        if problem is not None:
            return problem
    fmt = data.get("output_format") or "png"
    compression = data.get("output_compression")
    if compression is not None:
        if not _is_int(compression):
            return _type_error("output_compression", "an integer", compression)
        if not 0 <= compression <= 100:
            return ApiError(
                400,
                "Invalid 'output_compression': expected a value between 0 and 100, "
                f"but got {compression} instead.",
                param="output_compression",
                code="invalid_value",
            )
        if fmt == "png" and compression < 100:
            return ApiError(
                400,
                "Compression less than 100 is not supported for PNG output format.",
                param="output_compression",
                code="invalid_value",
            )
    if data.get("background") == "transparent" and fmt == "jpeg":
        return ApiError(
            400,
            "Transparent background is not supported for the jpeg output format; use png or webp.",
            param="background",
            code="invalid_value",
        )
    if data.get("stream") not in (None, False):
        # Streaming (SSE) is a real feature this simulator does not implement: say so, do not fake it.
        return ApiError(400, "The wfbatch simulator does not stream: send stream=false.", param="stream")
    partial = data.get("partial_images")
    if partial is not None:
        return ApiError(
            400, "partial_images requires stream=true.", param="partial_images", code="invalid_value"
        )
    return None


def parse_generation(body: bytes) -> Generation | ApiError:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload.)",
        )
    for param in data:
        if param not in KNOWN_FIELDS:
            return ApiError(
                400, f"Unrecognized request argument supplied: {param}", param=param, code="unknown_parameter"
            )
    rules = _model(data)
    if isinstance(rules, ApiError):
        return rules
    prompt = _prompt(data, rules)
    if isinstance(prompt, ApiError):
        return prompt
    n = _n(data, rules)
    if isinstance(n, ApiError):
        return n
    problem = (
        _model_specific(data, rules)
        or _size(data, rules)
        or _choice(data, "quality", rules.qualities)
        or (_choice(data, "response_format", RESPONSE_FORMATS) if not rules.gpt else None)
        or (_choice(data, "style", STYLES) if rules.name == "dall-e-3" else None)
        or (_gpt_output(data) if rules.gpt else None)
    )
    if data.get("user") is not None and not isinstance(data.get("user"), str):
        problem = problem or _type_error("user", "a string", data["user"])
    if problem is not None:
        return problem
    width, height = resolved_size(rules, data.get("size"))
    fmt: ImageFormat = data.get("output_format") or "png"
    return Generation(
        rules=rules,
        prompt=prompt,
        n=n,
        width=width,
        height=height,
        quality=resolved_quality(rules, data.get("quality")),
        response_format="b64_json" if rules.gpt else data.get("response_format") or "url",
        output_format=fmt,
        compression=data.get("output_compression", 100) if fmt != "png" else 100,
        transparent=data.get("background") == "transparent",
    )
