"""Golden tests: the prompts are byte-identical to the reference (AMAP-ML/SocioReasoner 7ba0c65)."""

from sociomap.reasoning.prompts import chat_messages, stage1_prompt, stage2_prompt, templates_sha256

GOLDEN_STAGE1 = (
    "You will be given two images. The first is a map and the second is a corresponding satellite image.Please find "
    "'Park and greenspace' with bboxs.Compare the difference between object(s) and find the most closely matched "
    "object(s).Output the thinking process in <think> </think> and final answer in <answer> </answer> tags. Please "
    "use English.Output the bbox(es) in JSON format.i.e., <think>thinking process here </think><answer>"
    '[{"bbox_2d": [bx1,by1,bx2,by2]}, {"bbox_2d": [bx3,by3,bx4,by4]}]</answer>'
)
GOLDEN_STAGE2 = (
    "You will be given two images. The first is a map and the second is a corresponding satellite image.Now some "
    'bbox(s) and the results after SAM segmentation for "school" have been rendered on these two images.The found '
    'bbox(s) are: [{"bbox_2d": [1, 2, 3, 4]}].Please add some points appropriately to each bbox to better represent '
    "the area of interest.Output the thinking process in <think> </think> and final answer in <answer> </answer> "
    'tags.i.e., <think> thinking process here </think><answer>[{"bbox_2d": [bx1,by1,bx2,by2], "points": '
    '[[px1,py1],[px2,py2],[px3,py3]]}, {"bbox_2d": [bx3,by3,bx4,by4], "points": [[px4,py4],[px5,py5],[px6,py6]}]'
    "</answer>"
)


def test_stage1_prompt_is_byte_identical():
    assert stage1_prompt("Park and greenspace") == GOLDEN_STAGE1


def test_stage2_prompt_is_byte_identical():
    assert stage2_prompt("school", '[{"bbox_2d": [1, 2, 3, 4]}]') == GOLDEN_STAGE2


def test_stage2_with_no_stage1_answer_says_empty_boxes():
    assert "The found bbox(s) are: .Please add" in stage2_prompt("park", "")


def test_query_braces_are_inserted_verbatim():
    assert "Please find '{x} {}' with bboxs." in stage1_prompt("{x} {}")


def test_messages_are_map_then_satellite_then_text():
    assert chat_messages("T") == [{"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                                              {"type": "text", "text": "T"}]}]


def test_chat_template_renders_images_before_text_with_generation_prompt(reasoner):
    text = reasoner.engine.chat_text("T")
    assert text == ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
                    "<|vision_start|><|image_pad|><|vision_end|>T<|im_end|>\n<|im_start|>assistant\n")


def test_template_hash_is_pinned():
    assert templates_sha256() == "7beeec773057dc5f3325b69ee6cd3907f6c3b6a9ac88f1606cf8618cb2cdc4e7"
