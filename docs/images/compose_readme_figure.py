"""README's picture: the class means and the taxonomy of one `run.py analyze` output, stacked.

    .venv/bin/python run.py analyze --checkpoint ~/.cache/neural-echos/weights/efficientnet-lite1.pth \
        --out /tmp/lite1
    .venv/bin/python docs/images/compose_readme_figure.py /tmp/lite1 \
        docs/images/efficientnet_lite1_kernels.png

Both parts are analyze's own PNGs, unchanged but for the taxonomy's first line (its title, shortened
from the left to fit), which the header below replaces with the full statement from summary.json.
Pillow pastes images; nothing here is measured or computed but the header's numbers, read from
summary.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

TAXONOMY_TITLE_ROW = 20  # px: the first text row of grids.taxonomy_image (FONT_SIZE + 8)
MARGIN = 8


def header_lines(summary: dict) -> list[str]:
    share, chance = summary["proportions"], summary["chance"]
    return [
        (
            f"{summary['kernels']:,} depthwise kernels of EfficientNet-Lite1 (ImageNet-trained), "
            f"classifier: {summary['method']}"
        ),
        (
            f"on-center {share['on_center']:.1%} (chance {chance['on_center']:.1%}), "
            f"off-center {share['off_center']:.1%} (chance {chance['off_center']:.1%})"
        ),
    ]


def compose(analysis: Path, target: Path) -> Path:
    summary = json.loads((analysis / "summary.json").read_text())
    centroids = Image.open(analysis / "centroids.png").convert("RGB")
    taxonomy = Image.open(analysis / "taxonomy.png").convert("RGB")
    taxonomy = taxonomy.crop((0, TAXONOMY_TITLE_ROW, taxonomy.width, taxonomy.height))
    font = ImageFont.load_default(size=16)
    lines = header_lines(summary)
    line_height = 22
    header = MARGIN + line_height * len(lines)
    width = max(centroids.width, taxonomy.width)
    picture = Image.new("RGB", (width, header + centroids.height + taxonomy.height + MARGIN), "white")
    draw = ImageDraw.Draw(picture)
    for row, line in enumerate(lines):
        draw.text((MARGIN, MARGIN // 2 + row * line_height), line, fill=(20, 20, 20), font=font)
    picture.paste(centroids, (0, header))
    picture.paste(taxonomy, (0, header + centroids.height))
    target.parent.mkdir(parents=True, exist_ok=True)
    picture.save(target, optimize=True)
    return target


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("error: give two arguments: ANALYZE_OUT_FOLDER TARGET.png", file=sys.stderr)
        return 2
    analysis = Path(argv[0])
    needed = ("summary.json", "centroids.png", "taxonomy.png")
    missing = [name for name in needed if not (analysis / name).is_file()]
    if missing:
        print(
            f"error: {analysis} lacks {', '.join(missing)}: give the --out folder of `run.py analyze`",
            file=sys.stderr,
        )
        return 2
    print(compose(analysis, Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
