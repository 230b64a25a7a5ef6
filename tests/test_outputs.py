"""The output writer, on real files: formats, metadata, layout, manifest, contact sheet, review."""

from __future__ import annotations

import io
import json
import os
import re
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms
from pydantic import ValidationError

import wfbatch.outputs
from wfbatch.core.models import ImageFormat
from wfbatch.core.states import JobState, ReviewStatus
from wfbatch.outputs import (
    CONTACT_SHEET_FILE_NAME,
    MANIFEST_FILE_NAME,
    REVIEW_FOLDERS,
    ImageDecodeError,
    Manifest,
    ManifestEntry,
    ManifestError,
    UnsafePathError,
    atomic_write_bytes,
    atomic_write_text,
    batch_dir_name,
    claim_batch_dir,
    encode_image,
    image_file_name,
    make_slug,
    move_for_review,
    read_embedded_metadata,
    read_manifest,
    render_contact_sheet,
    review_path,
    write_contact_sheet,
    write_manifest,
)
from wfbatch.outputs.contact_sheet import LABEL_HEIGHT, PADDING

PILLOW_FORMAT = {ImageFormat.PNG: "PNG", ImageFormat.WEBP: "WEBP", ImageFormat.JPEG: "JPEG"}
NON_ASCII_PROMPT = 'Ein Schloß im Nebel — 東京の夜景 🌃, «ΑΒΓ» עברית\u202e, e\u0301 (NFD) and \\ "quotes"'
SLUG_PATTERN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


def image_bytes(
    mode: str = "RGB",
    size: tuple[int, int] = (64, 48),
    color: object = (200, 30, 30),
    pillow_format: str = "PNG",
    **save_options: object,
) -> bytes:
    image = Image.new(mode, size, color)  # type: ignore[arg-type]
    output = io.BytesIO()
    image.save(output, pillow_format, **save_options)
    return output.getvalue()


def open_copy(data: bytes | Path) -> Image.Image:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(source) as image:
        image.load()
        loaded = image.copy()
        loaded.format = image.format
        return loaded


# --- formats -------------------------------------------------------------------------------------


def palette_bytes_with_transparency() -> bytes:
    image = Image.new("P", (64, 48), 0)
    image.putpalette([255, 0, 0, 0, 255, 0])
    image.paste(1, (0, 0, 32, 48))  # left half green, right half index 0: transparent
    output = io.BytesIO()
    image.save(output, "PNG", transparency=0)
    return output.getvalue()


SOURCES = {
    "png-rgb": (image_bytes("RGB"), False),
    "png-rgba": (image_bytes("RGBA", color=(10, 20, 30, 100)), True),
    "png-l": (image_bytes("L", color=128), False),
    "png-p-transparent": (palette_bytes_with_transparency(), True),
    "jpeg": (image_bytes("RGB", pillow_format="JPEG"), False),
    "webp-rgba": (image_bytes("RGBA", color=(10, 20, 30, 100), pillow_format="WEBP"), True),
    "gif": (image_bytes("P", color=3, pillow_format="GIF"), False),
    "bmp": (image_bytes("RGB", pillow_format="BMP"), False),
}


@pytest.mark.parametrize("fmt", list(ImageFormat))
@pytest.mark.parametrize("source_name", list(SOURCES))
def test_every_source_converts_to_every_format(fmt: ImageFormat, source_name: str) -> None:
    source, transparent = SOURCES[source_name]

    image = open_copy(encode_image(source, fmt, None, {}))

    assert image.format == PILLOW_FORMAT[fmt]
    assert image.size == (64, 48)
    expected_mode = "RGBA" if transparent and fmt is not ImageFormat.JPEG else "RGB"
    assert image.mode == expected_mode


def test_jpeg_flattens_transparency_onto_white() -> None:
    fully_transparent = image_bytes("RGBA", color=(255, 0, 0, 0))

    image = open_copy(encode_image(fully_transparent, ImageFormat.JPEG, 95, {}))

    red, green, blue = image.getpixel((32, 24))  # type: ignore[misc]
    assert min(red, green, blue) > 245


def test_quality_changes_lossy_output_and_is_checked() -> None:
    noisy = Image.effect_noise((128, 128), 60).convert("RGB")
    output = io.BytesIO()
    noisy.save(output, "PNG")
    source = output.getvalue()

    for fmt in (ImageFormat.JPEG, ImageFormat.WEBP):
        assert len(encode_image(source, fmt, 20, {})) < len(encode_image(source, fmt, 95, {}))
    with pytest.raises(ValueError, match="quality"):
        encode_image(source, ImageFormat.JPEG, 0, {})


def test_exif_orientation_is_applied_to_the_pixels() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise
    source = image_bytes("RGB", size=(40, 20), pillow_format="JPEG", exif=exif.tobytes())

    image = open_copy(encode_image(source, ImageFormat.PNG, None, {}))

    assert image.size == (20, 40)


def test_rgb_colour_profile_is_kept() -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = image_bytes("RGB", icc_profile=profile)

    for fmt in ImageFormat:
        assert open_copy(encode_image(source, fmt, None, {})).info.get("icc_profile") == profile


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html>502 Bad Gateway</html>", id="html-error-page"),
        pytest.param(image_bytes("RGB", size=(256, 256), pillow_format="PNG")[:300], id="truncated-png"),
        pytest.param(image_bytes("RGB", size=(256, 256), pillow_format="JPEG")[:400], id="truncated-jpeg"),
        pytest.param(image_bytes("RGB", size=(256, 256), pillow_format="WEBP")[:60], id="truncated-webp"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, id="png-signature-only"),
    ],
)
@pytest.mark.parametrize("fmt", list(ImageFormat))
def test_corrupt_input_raises_image_decode_error(corrupt: bytes, fmt: ImageFormat) -> None:
    with pytest.raises(ImageDecodeError, match="cannot decode the image") as raised:
        encode_image(corrupt, fmt, None, {"prompt": "x"})
    assert isinstance(raised.value, ValueError)


# --- metadata ------------------------------------------------------------------------------------

ENGINE_METADATA: dict[str, str | None] = {
    "prompt": NON_ASCII_PROMPT,
    "negative_prompt": "blurry, ünscharf",
    "seed": "4294967295",
    "model": "flux-dev",
    "provider": "local",
    "cache_key": "ab" * 32,
    "job_id": "j_01",
    "batch_id": "b_01",
}


@pytest.mark.parametrize("fmt", list(ImageFormat))
def test_metadata_round_trips_exactly(tmp_path: Path, fmt: ImageFormat) -> None:
    metadata = {**ENGINE_METADATA, "model": None, "negative_prompt": ""}
    path = tmp_path / f"image.{fmt}"
    path.write_bytes(encode_image(SOURCES["png-rgba"][0], fmt, None, metadata))

    assert read_embedded_metadata(path) == {
        **{key: value for key, value in ENGINE_METADATA.items() if key not in {"model", "negative_prompt"}},
        "seed": 4294967295,  # an int, as the manifest types it
    }


def test_png_also_has_one_readable_chunk_per_key() -> None:
    image = open_copy(encode_image(SOURCES["png-rgb"][0], ImageFormat.PNG, None, ENGINE_METADATA))

    assert image.info["prompt"] == NON_ASCII_PROMPT
    assert image.info["seed"] == "4294967295"
    assert json.loads(image.info["wfbatch"]) == ENGINE_METADATA


def test_jpeg_shortens_metadata_that_does_not_fit_its_exif_segment(tmp_path: Path) -> None:
    metadata = {"prompt": "é" * 32_000, "negative_prompt": "n" * 32_000, "seed": "7"}
    path = tmp_path / "big.jpg"
    path.write_bytes(encode_image(SOURCES["png-rgb"][0], ImageFormat.JPEG, None, metadata))

    embedded = read_embedded_metadata(str(path))  # a str path is a path too

    assert embedded["seed"] == 7
    assert embedded["truncated_keys"] == "negative_prompt,prompt"
    assert "é" * 1000 in embedded["prompt"]
    assert 1000 < len(embedded["negative_prompt"]) < 32_000


@pytest.mark.parametrize("fmt", [ImageFormat.PNG, ImageFormat.WEBP])
def test_long_metadata_is_kept_whole_in_png_and_webp(tmp_path: Path, fmt: ImageFormat) -> None:
    metadata = {"prompt": "é" * 32_000, "negative_prompt": "n" * 32_000}
    path = tmp_path / f"big.{fmt}"
    path.write_bytes(encode_image(SOURCES["png-rgb"][0], fmt, None, metadata))

    assert read_embedded_metadata(path) == metadata


def test_foreign_images_have_no_wfbatch_metadata(tmp_path: Path) -> None:
    comfy_like = tmp_path / "comfy.png"
    with Image.new("RGB", (8, 8)) as image:
        from PIL.PngImagePlugin import PngInfo

        chunks = PngInfo()
        chunks.add_text("prompt", '{"3": {"class_type": "KSampler"}}')
        image.save(comfy_like, pnginfo=chunks)
    described = tmp_path / "camera.jpg"
    exif = Image.Exif()
    exif[0x010E] = '{"not": "ours"}'
    described.write_bytes(image_bytes(pillow_format="JPEG", exif=exif.tobytes()))
    plain = tmp_path / "plain.webp"
    plain.write_bytes(image_bytes(pillow_format="WEBP"))

    for path in (comfy_like, described, plain):
        assert read_embedded_metadata(path) == {}


def test_reading_metadata_of_a_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_embedded_metadata(tmp_path / "nope.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ImageDecodeError):
        read_embedded_metadata(broken)


@pytest.mark.parametrize("key", ["", "wfbatch", "with space", "x" * 80, "naïve"])
def test_metadata_keys_must_be_plain(key: str) -> None:
    with pytest.raises(ValueError, match="metadata key"):
        encode_image(SOURCES["png-rgb"][0], ImageFormat.PNG, None, {key: "value"})


# --- layout --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("A castle at Dawn!", "a-castle-at-dawn"),
        ("Café crème, naïve", "cafe-creme-naive"),
        ("../../etc/passwd", "etc-passwd"),
        ("/abs/path", "abs-path"),
        ("C:\\Windows\\system32", "c-windows-system32"),
        ("nul\0byte", "nul-byte"),
        ("🌃🌃🌃", "image"),
        ("עברית ومرحبا", "image"),
        ("..", "image"),
        ("", "image"),
        ("---", "image"),
        ("ﬁne ①", "fine-1"),
    ],
)
def test_make_slug_examples(text: str, slug: str) -> None:
    assert make_slug(text) == slug


def test_make_slug_caps_length_at_a_word_boundary() -> None:
    assert make_slug("x" * 10_000) == "x" * 48
    assert make_slug("one two three four", max_len=12) == "one-two"
    assert make_slug("abcdefghij klm", max_len=12) == "abcdefghij"
    assert make_slug("", max_len=3) == "ima"
    with pytest.raises(ValueError):
        make_slug("x", max_len=0)


@settings(max_examples=300, deadline=None)
@given(text=st.text(), max_len=st.integers(min_value=1, max_value=80))
def test_any_text_gives_a_safe_slug(text: str, max_len: int) -> None:
    slug = make_slug(text, max_len)

    assert SLUG_PATTERN.fullmatch(slug), slug
    assert len(slug) <= max_len


@settings(max_examples=200, deadline=None)
@given(
    prompt=st.text(), index=st.integers(min_value=0, max_value=10**6), status=st.sampled_from(ReviewStatus)
)
def test_any_prompt_stays_inside_the_batch_folder(prompt: str, index: int, status: ReviewStatus) -> None:
    batch_dir = Path("/srv/wfbatch/output/2025-05-01-batch")
    file_name = image_file_name(index, prompt, ImageFormat.WEBP)

    path = review_path(batch_dir, status, file_name)

    assert path.parent == batch_dir / REVIEW_FOLDERS[status]
    assert Path(os.path.normpath(path)) == path


def test_file_and_folder_names() -> None:
    assert image_file_name(1, "A castle", ImageFormat.PNG) == "00001-a-castle.png"
    assert image_file_name(42, "🌃", ImageFormat.JPEG) == "00042-image.jpg"
    assert image_file_name(123456, "x", ImageFormat.WEBP) == "123456-x.webp"
    with pytest.raises(ValueError):
        image_file_name(-1, "x", ImageFormat.PNG)
    created = datetime(2025, 5, 1, 23, 30, tzinfo=timezone(timedelta(hours=-7)))
    assert batch_dir_name(created, "My Castles (v2)") == "2025-05-01-my-castles-v2"
    assert REVIEW_FOLDERS == {
        ReviewStatus.PENDING: "pending-review",
        ReviewStatus.APPROVED: "approved",
        ReviewStatus.REJECTED: "rejected",
    }


@pytest.mark.parametrize(
    "file_name",
    ["", ".", "..", "../x.png", "a/../../b.png", "a//b.png", "a\\b.png", "/etc/passwd", "x\0.png"],
)
def test_review_path_rejects_anything_but_a_plain_name(tmp_path: Path, file_name: str) -> None:
    with pytest.raises(UnsafePathError):
        review_path(tmp_path, ReviewStatus.APPROVED, file_name)


def test_a_name_template_sub_folder_is_kept_through_review_moves(tmp_path: Path) -> None:
    path = review_path(tmp_path, ReviewStatus.PENDING, "a1/00001-0.png")
    assert path == tmp_path / "pending-review" / "a1" / "00001-0.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"png")
    approved = move_for_review(tmp_path, "pending-review/a1/00001-0.png", ReviewStatus.APPROVED)
    assert approved == "approved/a1/00001-0.png"
    assert (tmp_path / approved).read_bytes() == b"png" and not path.exists()
    stale_record = move_for_review(tmp_path, "pending-review/a1/00001-0.png", ReviewStatus.APPROVED)
    assert stale_record == approved


# --- atomic writes -------------------------------------------------------------------------------


def test_atomic_write_creates_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "file.txt"

    atomic_write_text(path, "first ✓")
    atomic_write_bytes(path, b"second")

    assert path.read_bytes() == b"second"
    assert [entry.name for entry in path.parent.iterdir()] == ["file.txt"]


def test_atomic_write_gives_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "file", b"x")
    finally:
        os.umask(umask)

    assert stat.S_IMODE((tmp_path / "file").stat().st_mode) == 0o644


def test_failed_atomic_write_keeps_nothing_behind(tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    (occupied / "child").mkdir(parents=True)  # a non-empty folder cannot be replaced by a file

    with pytest.raises(OSError):
        atomic_write_bytes(occupied, b"data")

    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["occupied"]


# --- manifest ------------------------------------------------------------------------------------


def make_manifest(batch_id: str = "b_01", entries: int = 2) -> Manifest:
    created = datetime(2025, 5, 1, 9, 30, tzinfo=UTC)
    return Manifest(
        batch_id=batch_id,
        name="Schlösser",
        created_at=created,
        updated_at=created + timedelta(minutes=5),
        counts={JobState.DONE: 1, JobState.FAILED: 1},
        entries=[
            ManifestEntry(
                job_id=f"j_{index}",
                index=index,
                user_id="castle" if index == 1 else None,
                prompt=NON_ASCII_PROMPT,
                negative_prompt=None,
                provider="local",
                provider_label="local (offline placeholder renderer)",
                model=None,
                seed=index,
                width=1024,
                height=768,
                variant=0,
                params={"steps": 30, "nested": {"cfg": 3.5}},
                tags=["castle", "night"],
                format=ImageFormat.PNG,
                file=f"pending-review/{index:05d}-x.png" if index == 1 else None,
                status=JobState.DONE if index == 1 else JobState.FAILED,
                review=ReviewStatus.PENDING,
                cache_hit=False,
                cache_key="ab" * 32,
                attempts=1,
                credits=0.25 if index == 1 else None,
                remote_id="exec-1",
                request_id="req-1",
                error=None if index == 1 else ManifestError(http_status=422, message="bad", request_id="r"),
                created_at=created,
                finished_at=created + timedelta(seconds=3),
            )
            for index in range(1, entries + 1)
        ],
    )


def test_manifest_round_trips_as_readable_utf8_json(tmp_path: Path) -> None:
    manifest = make_manifest()

    path = write_manifest(tmp_path, manifest)

    assert path == tmp_path / MANIFEST_FILE_NAME
    assert read_manifest(tmp_path) == manifest
    text = path.read_text(encoding="utf-8")
    assert "東京の夜景" in text and "Schlösser" in text
    assert text.startswith('{\n  "schema_version": 1,')
    document = json.loads(text)
    assert document["counts"] == {"done": 1, "failed": 1}
    assert document["entries"][0]["status"] == "done"
    assert document["entries"][0]["created_at"] == "2025-05-01T09:30:00Z"
    assert document["entries"][1]["error"] == {"http_status": 422, "message": "bad", "request_id": "r"}
    assert [entry.name for entry in tmp_path.iterdir()] == [MANIFEST_FILE_NAME]


def test_manifest_rejects_naive_times_and_newer_schemas(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Manifest(
            batch_id="b", name="n", created_at=datetime(2025, 5, 1), updated_at=datetime(2025, 5, 1),
            counts={}, entries=[],
        )  # fmt: skip
    document = json.loads(make_manifest().model_dump_json())
    (tmp_path / MANIFEST_FILE_NAME).write_text(json.dumps({**document, "schema_version": 2, "new": 1}))
    with pytest.raises(ValueError, match="schema version 2"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_FILE_NAME).write_text(json.dumps({**document, "new_field": 1}))
    assert read_manifest(tmp_path) == make_manifest()


def test_claim_batch_dir_keeps_batches_apart_and_is_repeatable(tmp_path: Path) -> None:
    created = datetime(2025, 5, 1, 9, 30, tzinfo=UTC)

    first = claim_batch_dir(tmp_path, created, "Castles", "b_1")
    second = claim_batch_dir(tmp_path, created, "Castles", "b_2")
    (tmp_path / "2025-05-01-castles-3").mkdir()  # someone else's folder, no manifest
    third = claim_batch_dir(tmp_path, created, "Castles", "b_3")

    assert (first.name, second.name, third.name) == (
        "2025-05-01-castles",
        "2025-05-01-castles-2",
        "2025-05-01-castles-4",
    )
    assert claim_batch_dir(tmp_path, created, "Castles", "b_2") == second
    assert read_manifest(second).batch_id == "b_2"
    assert read_manifest(second).entries == []


# --- contact sheet -------------------------------------------------------------------------------


def sheet_size(columns: int, rows: int, thumb: int) -> tuple[int, int]:
    return columns * (thumb + PADDING) + PADDING, rows * (thumb + LABEL_HEIGHT + PADDING) + PADDING


def cell_pixel(sheet: Image.Image, position: int, columns: int, thumb: int, dx: int, dy: int) -> object:
    row, column = divmod(position, columns)
    x = PADDING + column * (thumb + PADDING)
    y = PADDING + row * (thumb + LABEL_HEIGHT + PADDING)
    return sheet.getpixel((x + dx, y + dy))


def write_image(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


def test_contact_sheet_grid_thumbnails_and_bad_files(tmp_path: Path) -> None:
    wide = write_image(tmp_path / "wide.png", (200, 100), (255, 0, 0))
    tall = write_image(tmp_path / "tall.jpg", (50, 100), (0, 0, 255))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    items = [
        ("00001", wide),
        ("00002", tall),
        ("00003", broken),
        ("00004", tmp_path / "gone.png"),
        ("00005", wide),
    ]

    sheet = open_copy(render_contact_sheet(items, thumb=64))

    assert sheet.format == "PNG"
    assert sheet.size == sheet_size(columns=3, rows=2, thumb=64)
    # The wide image fills the width and 32 of the 64 rows, centred; above it is background.
    assert cell_pixel(sheet, 0, 3, 64, 32, 32) == (255, 0, 0)
    assert cell_pixel(sheet, 0, 3, 64, 32, 4) == (32, 32, 32)
    blue = cell_pixel(sheet, 1, 3, 64, 32, 32)
    assert isinstance(blue, tuple) and blue[2] > 200 and blue[0] < 50
    assert cell_pixel(sheet, 1, 3, 64, 2, 32) == (32, 32, 32)
    for bad_position in (2, 3):  # grey placeholder cells, no crash
        assert cell_pixel(sheet, bad_position, 3, 64, 2, 2) == (96, 96, 96)


def test_contact_sheet_beyond_max_items_and_fixed_columns(tmp_path: Path) -> None:
    image = write_image(tmp_path / "a.png", (20, 20), (0, 255, 0))
    items = [(f"{index:05d}", image) for index in range(1, 13)]

    sheet = open_copy(render_contact_sheet(items, thumb=40, columns=4, max_items=10))

    assert sheet.size == sheet_size(columns=4, rows=3, thumb=40)  # 10 thumbnails + "+2 more"
    assert cell_pixel(sheet, 10, 4, 40, 2, 2) == (96, 96, 96)
    assert cell_pixel(sheet, 11, 4, 40, 2, 2) == (32, 32, 32)


def test_empty_contact_sheet_says_so(tmp_path: Path) -> None:
    path = write_contact_sheet(tmp_path, [])

    assert path == tmp_path / CONTACT_SHEET_FILE_NAME
    sheet = open_copy(path)
    assert sheet.size == sheet_size(columns=1, rows=1, thumb=160)
    assert cell_pixel(sheet, 0, 1, 160, 2, 2) == (96, 96, 96)
    assert [entry.name for entry in tmp_path.iterdir()] == [CONTACT_SHEET_FILE_NAME]


def test_contact_sheet_copes_with_odd_labels(tmp_path: Path) -> None:
    image = write_image(tmp_path / "a.png", (20, 20), (0, 255, 0))

    sheet = open_copy(render_contact_sheet([("東京 " + "very long label " * 10, image)], thumb=32))

    assert sheet.size == sheet_size(columns=1, rows=1, thumb=32)


# --- review --------------------------------------------------------------------------------------


def pending_image(batch_dir: Path, name: str = "00001-castle.png") -> str:
    path = review_path(batch_dir, ReviewStatus.PENDING, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"image")
    return f"pending-review/{name}"


def test_review_moves_and_is_idempotent(tmp_path: Path) -> None:
    relative = pending_image(tmp_path)

    approved = move_for_review(tmp_path, relative, ReviewStatus.APPROVED)
    again = move_for_review(tmp_path, approved, ReviewStatus.APPROVED)
    stale_record = move_for_review(tmp_path, relative, ReviewStatus.APPROVED)

    assert approved == again == stale_record == "approved/00001-castle.png"
    assert (tmp_path / approved).read_bytes() == b"image"
    assert not (tmp_path / relative).exists()

    back = move_for_review(tmp_path, approved, ReviewStatus.PENDING)
    rejected = move_for_review(tmp_path, "approved/00001-castle.png", ReviewStatus.REJECTED)
    assert (back, rejected) == (relative, "rejected/00001-castle.png")
    assert (tmp_path / rejected).read_bytes() == b"image"


def test_review_of_a_missing_or_ambiguous_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="none of the review folders"):
        move_for_review(tmp_path, "pending-review/00009-x.png", ReviewStatus.APPROVED)

    relative = pending_image(tmp_path)
    review_path(tmp_path, ReviewStatus.APPROVED, "00001-castle.png").parent.mkdir()
    review_path(tmp_path, ReviewStatus.APPROVED, "00001-castle.png").write_bytes(b"other")
    with pytest.raises(FileExistsError):
        move_for_review(tmp_path, relative, ReviewStatus.APPROVED)
    assert (tmp_path / relative).read_bytes() == b"image"


@pytest.mark.parametrize(
    "relative",
    [
        "../outside.png",
        "pending-review/../../x.png",
        "/etc/passwd",
        "manifest.json",
        "approved/a/../../../b.png",
        "x/y.png",
    ],
)
def test_review_never_leaves_the_batch_folder(tmp_path: Path, relative: str) -> None:
    with pytest.raises(UnsafePathError):
        move_for_review(tmp_path, relative, ReviewStatus.APPROVED)


# --- package -------------------------------------------------------------------------------------


def test_public_names() -> None:
    assert sorted(wfbatch.outputs.__all__) == sorted(set(wfbatch.outputs.__all__))
    for name in wfbatch.outputs.__all__:
        assert getattr(wfbatch.outputs, name) is not None
    public = {name for name in vars(wfbatch.outputs) if not name.startswith("_")}
    modules = {"atomic", "batch_folder", "bucket", "contact_sheet", "images", "layout", "manifest", "review"}
    assert public - modules == set(wfbatch.outputs.__all__)
