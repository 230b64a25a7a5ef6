"""The batch folder's formats: names and places, images with their metadata, review folders,
`manifest.json` and the contact sheet, each file written atomically.

What a batch leaves on disk under `output/<YYYY-MM-DD>-<batch-name>/` is shaped here; when it is
written is decided by the engine's writer (`wfbatch.engine.loop.writer`). Nothing here knows about the
store, the providers or the scheduler.
"""

from wfbatch.outputs.atomic import atomic_write_bytes, atomic_write_text
from wfbatch.outputs.batch_folder import claim_batch_dir, release_batch_dir
from wfbatch.outputs.contact_sheet import CONTACT_SHEET_FILE_NAME, render_contact_sheet, write_contact_sheet
from wfbatch.outputs.images import (
    METADATA_KEYS,
    ImageDecodeError,
    decode_image,
    encode_image,
    read_embedded_metadata,
)
from wfbatch.outputs.layout import (
    FILE_EXTENSIONS,
    REVIEW_FOLDERS,
    UnsafePathError,
    batch_dir_name,
    image_file_name,
    make_slug,
    review_path,
)
from wfbatch.outputs.manifest import (
    MANIFEST_FILE_NAME,
    Manifest,
    ManifestDelivery,
    ManifestEntry,
    ManifestError,
    ManifestInput,
    read_manifest,
    write_manifest,
)
from wfbatch.outputs.review import move_for_review

__all__ = [
    "CONTACT_SHEET_FILE_NAME",
    "FILE_EXTENSIONS",
    "MANIFEST_FILE_NAME",
    "METADATA_KEYS",
    "REVIEW_FOLDERS",
    "ImageDecodeError",
    "Manifest",
    "ManifestDelivery",
    "ManifestEntry",
    "ManifestError",
    "ManifestInput",
    "UnsafePathError",
    "atomic_write_bytes",
    "atomic_write_text",
    "batch_dir_name",
    "claim_batch_dir",
    "decode_image",
    "encode_image",
    "image_file_name",
    "make_slug",
    "move_for_review",
    "read_embedded_metadata",
    "read_manifest",
    "release_batch_dir",
    "render_contact_sheet",
    "review_path",
    "write_contact_sheet",
    "write_manifest",
]
