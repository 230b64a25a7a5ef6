"""A hand-transcribed subset of OpenAI's published schemas for the Images API (providers.md §5.1,
§5.2, §11: `openai/openai-openapi`, `CreateImageRequest`, `ImagesResponse`, `Image`,
`ImageGenUsage`, `ErrorResponse`), as JSON Schema data: what our requests and the simulator's
answers are checked against. Transcribed, not fetched (no network here); keep it to what the spec
says, including its quirks (the response enums are narrower than the request's)."""

from __future__ import annotations

from typing import Any

_NULLABLE_STRING = {"type": ["string", "null"]}

CREATE_IMAGE_REQUEST: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string"},
        # The spec: anyOf [string, enum of known models]: any string passes the schema.
        "model": {"type": ["string", "null"]},
        "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 10},
        "quality": {"enum": ["standard", "hd", "low", "medium", "high", "auto", None]},
        "response_format": {"enum": ["url", "b64_json", None]},
        "output_format": {"enum": ["png", "jpeg", "webp", None]},
        "output_compression": {"type": ["integer", "null"]},
        "stream": {"type": ["boolean", "null"]},
        "partial_images": {"type": ["integer", "null"], "minimum": 0, "maximum": 3},
        "size": _NULLABLE_STRING,
        "moderation": {"enum": ["low", "auto", None]},
        "background": {"enum": ["transparent", "opaque", "auto", None]},
        "style": {"enum": ["vivid", "natural", None]},
        "user": {"type": "string"},
    },
    "additionalProperties": False,
}

IMAGES_RESPONSE: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["created"],
    "properties": {
        "created": {"type": "integer"},
        "data": {"type": "array", "items": {"$ref": "#/$defs/Image"}},
        "background": {"enum": ["transparent", "opaque"]},
        "output_format": {"enum": ["png", "webp", "jpeg"]},
        "size": {"enum": ["1024x1024", "1024x1536", "1536x1024"]},
        "quality": {"enum": ["low", "medium", "high"]},
        "usage": {"$ref": "#/$defs/ImageGenUsage"},
    },
    "$defs": {
        "Image": {
            "type": "object",
            "properties": {
                "b64_json": {"type": "string"},
                "url": {"type": "string"},
                "revised_prompt": {"type": "string"},
            },
        },
        "ImageGenUsage": {
            "type": "object",
            "required": ["input_tokens", "total_tokens", "output_tokens", "input_tokens_details"],
            "properties": {
                "input_tokens": {"type": "integer"},
                "total_tokens": {"type": "integer"},
                "output_tokens": {"type": "integer"},
                "input_tokens_details": {
                    "type": "object",
                    "required": ["text_tokens", "image_tokens"],
                    "properties": {"text_tokens": {"type": "integer"}, "image_tokens": {"type": "integer"}},
                },
                "output_tokens_details": {
                    "type": "object",
                    "required": ["image_tokens", "text_tokens"],
                    "properties": {"image_tokens": {"type": "integer"}, "text_tokens": {"type": "integer"}},
                },
            },
        },
    },
}

ERROR_RESPONSE: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message", "param", "code"],
            "properties": {
                "code": _NULLABLE_STRING,
                "message": {"type": "string"},
                "param": _NULLABLE_STRING,
                "type": {"type": "string"},
            },
        }
    },
}

CREATE_IMAGE_EDIT_REQUEST: dict[str, Any] = {
    # `CreateImageEditRequest` (multipart/form-data), providers.md §12.1: the text fields as JSON
    # values (a test turns the form's integers and booleans back into numbers and booleans first),
    # the files as the names of their parts. `image` is one file or an array of up to 16.
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["image", "prompt"],
    "properties": {
        "image": {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 16}]
        },
        "prompt": {"type": "string"},
        "mask": {"type": "string"},
        "background": {"enum": ["transparent", "opaque", "auto", None]},
        "model": {"type": ["string", "null"]},
        "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 10},
        "size": {"enum": ["256x256", "512x512", "1024x1024", "1536x1024", "1024x1536", "auto", None]},
        "response_format": {"enum": ["url", "b64_json", None]},
        "output_format": {"enum": ["png", "jpeg", "webp", None]},
        "output_compression": {"type": ["integer", "null"]},
        "user": {"type": "string"},
        "input_fidelity": {"enum": ["high", "low", None]},
        "stream": {"type": ["boolean", "null"]},
        "partial_images": {"type": ["integer", "null"], "minimum": 0, "maximum": 3},
        "quality": {"enum": ["standard", "low", "medium", "high", "auto", None]},
    },
    "additionalProperties": False,
}
