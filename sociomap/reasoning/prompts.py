"""The two SocioReasoner prompts, byte-identical to the reference (AMAP-ML/SocioReasoner, 7ba0c65).

Pure strings and message lists: no torch, no processor. The fragments are joined WITHOUT spaces, as the
reference does (its Python string literals are adjacent); do not "fix" them, the published weights were trained
on exactly these bytes.
"""

from __future__ import annotations

import hashlib

STAGE1_TEMPLATE = (
    "You will be given two images. The first is a map and the second is a corresponding satellite image."
    "Please find '{prompt}' with bboxs."
    "Compare the difference between object(s) and find the most closely matched object(s)."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags. Please use English."
    "Output the bbox(es) in JSON format."
    "i.e., <think>thinking process here </think>"
    "<answer>{answer}</answer>"
)
STAGE1_ANSWER_EXAMPLE = '[{"bbox_2d": [bx1,by1,bx2,by2]}, {"bbox_2d": [bx3,by3,bx4,by4]}]'

STAGE2_TEMPLATE = (
    "You will be given two images. The first is a map and the second is a corresponding satellite image."
    'Now some bbox(s) and the results after SAM segmentation for "{prompt}" have been rendered on these two images.'
    "The found bbox(s) are: {bboxs}."
    "Please add some points appropriately to each bbox to better represent the area of interest."
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "i.e., <think> thinking process here </think>"
    "<answer>{answer}</answer>"
)
# Malformed on purpose (a ']' is missing before the last '}'): the reference prompt has it this way.
STAGE2_ANSWER_EXAMPLE = (
    '[{"bbox_2d": [bx1,by1,bx2,by2], "points": [[px1,py1],[px2,py2],[px3,py3]]}, '
    '{"bbox_2d": [bx3,by3,bx4,by4], "points": [[px4,py4],[px5,py5],[px6,py6]}]'
)


def stage1_prompt(query: str) -> str:
    """Stage-1 (localization) user text for one query."""
    return STAGE1_TEMPLATE.format(prompt=query, answer=STAGE1_ANSWER_EXAMPLE)


def stage2_prompt(query: str, stage1_answer: str) -> str:
    """Stage-2 (refinement) user text; `stage1_answer` is the raw text inside stage 1's <answer> tags ("" if none)."""
    return STAGE2_TEMPLATE.format(prompt=query, bboxs=stage1_answer, answer=STAGE2_ANSWER_EXAMPLE)


def chat_messages(user_text: str) -> list[dict]:
    """One user turn: map image, satellite image, then the text (the reference's order); no system message."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": user_text}]}]


def templates_sha256() -> str:
    """Hash of both templates and answer examples: part of the reasoner identity (cache key)."""
    blob = "\0".join([STAGE1_TEMPLATE, STAGE1_ANSWER_EXAMPLE, STAGE2_TEMPLATE, STAGE2_ANSWER_EXAMPLE])
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
