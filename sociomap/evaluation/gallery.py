"""sociomap.evaluation.gallery: the failure gallery, one self-contained HTML file (images as data URIs).

While samples stream, ``Gallery.offer`` keeps small JPEG thumbnails of the first ``limit`` failures of each
mode (so memory stays bounded on the full test split); ``html`` renders them grouped by failure mode, each
with the satellite image, the map, the ground truth, the stage-1 and stage-2 masks and the model's texts.
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from sociomap.evaluation.failures import FAILURE_IOU, MODES

THUMB = 256  # px, longest side of a gallery image
_COLORS = {"gt": (0, 200, 0), "stage1": (255, 0, 0), "stage2": (0, 90, 255)}


@dataclass(frozen=True)
class Card:
    """One failed sample as the gallery shows it."""

    id: str
    query: str
    task: str
    category: str
    stage1_iou: float
    stage2_iou: float
    detail: str
    images: dict[str, str]  # caption -> data URI
    stage1_text: str
    stage2_text: str
    boxes: list
    points: list


def _data_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _thumb(rgb: np.ndarray) -> tuple[Image.Image, float]:
    """(thumbnail, scale from sample pixels to thumbnail pixels)."""
    image = Image.fromarray(rgb)
    scale = min(1.0, THUMB / max(image.size))
    if scale < 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    return image, scale


def overlay(rgb: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], alpha: float = 0.45
            ) -> Image.Image:
    """The mask tinted over the image at thumbnail size."""
    tinted = rgb.astype(np.float32)
    tinted[mask] = (1 - alpha) * tinted[mask] + alpha * np.array(color, np.float32)
    return _thumb(tinted.astype(np.uint8))[0]


def _with_prompts(image: Image.Image, scale: float, boxes: list, points: list) -> Image.Image:
    """Stage-2 boxes (outline) and points (dots), given in sample pixels, drawn on a thumbnail."""
    draw = ImageDraw.Draw(image)
    for box in boxes:
        x1, y1, x2, y2 = (c * scale for c in box)
        draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=(255, 255, 0), width=2)
    for x, y in points:
        draw.ellipse([x * scale - 3, y * scale - 3, x * scale + 3, y * scale + 3], fill=(255, 255, 0))
    return image


def make_card(sample: object, prediction: object, record: object) -> Card:
    """Thumbnails and texts of one failed sample."""
    sat, scale = _thumb(sample.satellite)
    stage2 = _with_prompts(overlay(sample.satellite, prediction.mask, _COLORS["stage2"]), scale,
                           prediction.boxes, prediction.points)
    images = {
        "satellite": _data_uri(sat),
        "map": _data_uri(_thumb(sample.map)[0]),
        "ground truth": _data_uri(overlay(sample.satellite, sample.mask, _COLORS["gt"])),
        "stage 1 (coarse)": _data_uri(overlay(sample.satellite, prediction.coarse_mask, _COLORS["stage1"])),
        "stage 2 (final) + prompts": _data_uri(stage2),
    }
    return Card(record.id, record.query, record.info.task, record.info.category, record.stage1.iou,
                record.stage2.iou, record.failure_detail, images, prediction.stage1_text,
                prediction.stage2_text, prediction.boxes, prediction.points)


class Gallery:
    """Collects the cards of failed samples: every failure is counted, the first ``limit`` per mode kept."""

    def __init__(self, limit: int = 30) -> None:
        self.limit = limit
        self.cards: dict[str, list[Card]] = defaultdict(list)
        self.counts: dict[str, int] = defaultdict(int)

    def offer(self, sample: object, prediction: object, record: object) -> None:
        """Consider one scored sample (only failures are kept)."""
        if record.failure is None:
            return
        self.counts[record.failure] += 1
        if len(self.cards[record.failure]) < self.limit:
            self.cards[record.failure].append(make_card(sample, prediction, record))

    def html(self, evaluation: object, rows: list) -> str:
        """The whole page."""
        import jinja2

        env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        headline = [r for r in rows if r.by in ("all", "task")]
        sections = [(mode, self.counts.get(mode, 0), self.cards.get(mode, [])) for mode in MODES]
        return env.from_string(_TEMPLATE).render(
            evaluation=evaluation, rows=headline, sections=sections, limit=self.limit,
            failure_iou=FAILURE_IOU, total=sum(self.counts.values()),
            pct=lambda v: "–" if v is None else f"{100 * v:.1f}")


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SocioSeg failures: {{ evaluation.dataset }}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
.warn{background:#fee;border:2px solid #c00;padding:.6em;font-weight:bold}
.card{border:1px solid #ccc;border-radius:6px;margin:1em 0;padding:.6em}
.imgs{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0}figcaption{font-size:12px;color:#555}img{width:200px;height:auto;display:block}
pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em;max-height:20em;overflow:auto}
</style></head><body>
<h1>SocioSeg failure gallery</h1>
<p>{{ evaluation.dataset }}; model <code>{{ evaluation.identity.get("model") }}</code>
@ <code>{{ evaluation.identity.get("model_revision") }}</code>; {{ evaluation.records|length }} samples.</p>
{% if evaluation.random_weights %}<p class="warn">RANDOM WEIGHTS: a random-initialised test checkpoint made
these masks; the numbers are meaningless.</p>{% endif %}
<table><tr><th>task</th><th>n</th><th>s1 cIoU</th><th>s1 gIoU</th><th>s1 F1</th>
<th>s2 cIoU</th><th>s2 gIoU</th><th>s2 F1</th></tr>
{% for r in rows %}<tr><td>{{ r.name }}</td><td>{{ r.n }}</td><td>{{ pct(r.stage1.ciou) }}</td>
<td>{{ pct(r.stage1.giou) }}</td><td>{{ pct(r.stage1.f1) }}</td><td>{{ pct(r.stage2.ciou) }}</td>
<td>{{ pct(r.stage2.giou) }}</td><td>{{ pct(r.stage2.f1) }}</td></tr>{% endfor %}
</table>
<p>{{ total }} samples failed (stage-2 IoU &lt; {{ failure_iou }}); at most {{ limit }} shown per mode.
Green: ground truth, red: stage-1 mask, blue: stage-2 mask, yellow: stage-2 boxes and points.</p>
<ul>{% for mode, count, cards in sections %}<li><a href="#{{ mode|replace(' ', '-') }}">{{ mode }}</a>:
{{ count }}</li>{% endfor %}</ul>
{% for mode, count, cards in sections %}
<h2 id="{{ mode|replace(' ', '-') }}">{{ mode }} ({{ count }})</h2>
{% for c in cards %}<div class="card"><b>{{ c.id }}</b>: "{{ c.query }}" ({{ c.task }}: {{ c.category }});
IoU stage 1 {{ "%.3f"|format(c.stage1_iou) }}, stage 2 {{ "%.3f"|format(c.stage2_iou) }}; {{ c.detail }}
<div class="imgs">{% for caption, uri in c.images.items() %}<figure><img src="{{ uri }}" alt="{{ caption }}">
<figcaption>{{ caption }}</figcaption></figure>{% endfor %}</div>
<details><summary>model texts</summary><p>stage 1:</p><pre>{{ c.stage1_text }}</pre>
<p>stage 2:</p><pre>{{ c.stage2_text }}</pre><p>final boxes {{ c.boxes }}, points {{ c.points }}</p></details>
</div>{% endfor %}{% endfor %}
</body></html>
"""
