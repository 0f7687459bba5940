"""The openai engine against a real HTTP server process (tests/reasoning/openai_server.py, tiny random Qwen2.5-VL):
same results as the in-process engine under greedy decoding, every field sent, per-request seeds, pipelining
within the concurrency bound, and each server fault answered clearly."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import socket

import numpy as np
import pytest
from PIL import Image

from sociomap.errors import ModelServerError
from sociomap.reasoning import ReasonerConfig, TilePair, load_reasoner, reasoner_identity
from sociomap.reasoning.prompts import stage1_prompt
from sociomap.reasoning.sampling import stage_seed
from sociomap.reasoning.served import VLLM_COMMAND, ServerUnavailableError, png_data_uri, strip_special_tokens
from sociomap.reasoning.vlm import resize_for_model
from tests.reasoning.conftest import make_tiles, openai_server

QUERIES = ["park", "school", "a longer hospital query"]


def keyed(tiles):
    return [TilePair(t.map, t.satellite, key=f"16/5/{i}") for i, t in enumerate(tiles)]


def served_config(tiny_config, url, **changes):
    settings = dict(engine="openai", endpoint=url, model="tiny", max_new_tokens=16, request_retries=1,
                    request_timeout=60)
    return dataclasses.replace(tiny_config, **{**settings, **changes})


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "requests.jsonl"
    with openai_server(tiny_dir / "vlm", "--log-requests", str(log)) as (url, _):
        yield url, log


def requests(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_greedy_texts_masks_and_scores_equal_the_hf_engine(reasoner, tiny_config, server):
    url, _ = server
    tiles = keyed(make_tiles(2, seed=11))
    hf = load_reasoner(dataclasses.replace(tiny_config, max_new_tokens=16)).segment(tiles, QUERIES)
    served = load_reasoner(served_config(tiny_config, url))
    try:
        remote = served.segment(tiles, QUERIES)
    finally:
        served.close()
    for a, b in zip(sum(hf, []), sum(remote, [])):
        assert (a.stage1_text, a.stage2_text) == (b.stage1_text, b.stage2_text)
        assert np.array_equal(a.mask, b.mask) and np.array_equal(a.coarse_mask, b.coarse_mask)
        assert a.scores == b.scores and a.boxes == b.boxes


def test_requests_carry_the_reference_prompt_lossless_images_and_every_setting(tiny_config, server):
    url, log = server
    before = len(requests(log))
    tile = keyed(make_tiles(1, size=768, seed=12))
    served = load_reasoner(served_config(tiny_config, url, greedy=False, seed=5, max_new_tokens=4))
    try:
        served.segment(tile, ["park"])
    finally:
        served.close()
    first, second = requests(log)[before:]
    body = first["body"]
    assert body["model"] == "tiny" and body["temperature"] == 1.0 and body["top_p"] == 0.8
    assert body["top_k"] == 100 and body["repetition_penalty"] == 1.0 and body["max_tokens"] == 4
    assert body["seed"] == stage_seed(5, "16/5/0", "park", 1) and second["body"]["seed"] == stage_seed(5, "16/5/0",
                                                                                                       "park", 2)
    assert body["skip_special_tokens"] is False
    assert body["mm_processor_kwargs"] == {"max_pixels": 768 * 768, "min_pixels": 56 * 56}
    [message] = body["messages"]
    map_part, sat_part, text_part = message["content"]
    assert text_part == {"type": "text", "text": stage1_prompt("park")}
    for part, image in ((map_part, tile[0].map), (sat_part, tile[0].satellite)):
        expected = np.asarray(resize_for_model(image))  # 756 px, as the reference hands vLLM
        assert part["image_url"]["size"] == [756, 756] and part["image_url"]["format"] == "PNG"
        assert part["image_url"]["sha256"] == hashlib.sha256(expected.tobytes()).hexdigest()


def test_png_data_uris_are_lossless():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    data = base64.b64decode(png_data_uri(image).split(",", 1)[1])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(image))


def test_special_tokens_are_stripped_like_skip_special_tokens():
    assert strip_special_tokens("<think>a</think><|im_end|><|endoftext|>") == "<think>a</think>"


def test_seeded_samples_do_not_depend_on_batch_companions(tiny_config, server):
    url, _ = server
    served = load_reasoner(served_config(tiny_config, url, greedy=False, seed=7, top_k=0, top_p=1.0))
    tiles = keyed(make_tiles(3, seed=13))
    try:
        alone = served.segment(tiles[1:2], ["park"])[0][0]
        crowd = served.segment(tiles, ["school", "park", "hospital"])[1][1]
        other = served.segment(tiles, ["school"])[1][0]
    finally:
        served.close()
    assert (alone.stage1_text, alone.stage2_text) == (crowd.stage1_text, crowd.stage2_text)
    assert other.stage1_text != alone.stage1_text


def test_pairs_move_to_stage_2_alone_within_the_concurrency_bound(tiny_dir, tiny_config, tmp_path):
    log = tmp_path / "requests.jsonl"
    with openai_server(tiny_dir / "vlm", "--log-requests", str(log), "--delay", "0.3") as (url, _):
        served = load_reasoner(served_config(tiny_config, url, concurrency=3))
        try:
            served.segment(keyed(make_tiles(2, seed=14)), QUERIES)
        finally:
            served.close()
    seen = sorted(requests(log), key=lambda r: r["arrived"])
    stages = [1 if "Please find '" in r["body"]["messages"][0]["content"][2]["text"] else 2 for r in seen]
    assert len(seen) == 12 and stages.count(2) == 6
    assert max(r["in_flight"] for r in seen) == 3  # concurrency used, and never exceeded
    assert stages.index(2) < len(stages) - 1 - stages[::-1].index(1)  # a stage 2 went out before the last stage 1


def test_identity_names_the_served_model_and_never_the_key(tiny_config, server, monkeypatch):
    url, _ = server
    monkeypatch.setenv("SOCIOMAP_API_KEY", "sk-very-secret")
    identity = reasoner_identity(served_config(tiny_config, url))
    assert identity["engine"] == "openai" and identity["model"] == "tiny"
    assert identity["model_revision"].startswith("served:") and identity["model_revision"].endswith("vlm")
    assert "sk-very-secret" not in json.dumps(identity)
    assert {"temperature", "top_p", "top_k", "max_new_tokens", "greedy", "seed", "sam_revision"} <= set(identity)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_server_at_start_is_a_model_error_naming_the_command(tiny_config):
    config = served_config(tiny_config, f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(ModelServerError, match="no model server answers") as error:
        load_reasoner(config)
    assert VLLM_COMMAND in str(error.value) and error.value.exit_code == 4


def test_a_model_the_server_does_not_serve_is_a_model_error(tiny_config, server):
    url, _ = server
    with pytest.raises(ModelServerError, match=r"serves tiny, not 'other'"):
        reasoner_identity(dataclasses.replace(served_config(tiny_config, url), model="other"))


def test_a_slow_server_times_out_after_the_retries(tiny_dir, tiny_config):
    with openai_server(tiny_dir / "vlm", "--delay", "3") as (url, _):
        served = load_reasoner(served_config(tiny_config, url, request_timeout=1, request_retries=1))
        try:
            with pytest.raises(ServerUnavailableError, match=r"APITimeoutError.*--request-timeout"):
                served.segment(keyed(make_tiles(1)), ["park"])
        finally:
            served.close()


def test_a_prompt_longer_than_the_server_context_is_a_clear_error(tiny_dir, tiny_config):
    with openai_server(tiny_dir / "vlm", "--max-model-len", "60") as (url, _):
        served = load_reasoner(served_config(tiny_config, url))
        try:
            with pytest.raises(ModelServerError, match=r"HTTP 400: This model's maximum context length is 60.*"
                                                       r"larger --max-model-len"):
                served.segment(keyed(make_tiles(1)), ["park"])
        finally:
            served.close()


def test_the_api_key_comes_from_the_named_environment_variable(tiny_dir, tiny_config, monkeypatch):
    with openai_server(tiny_dir / "vlm", "--api-key", "sk-test") as (url, _):
        monkeypatch.delenv("SOCIOMAP_API_KEY", raising=False)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        with pytest.raises(ModelServerError, match=r"HTTP 401.*\$MY_KEY"):
            load_reasoner(served_config(tiny_config, url, api_key_env="MY_KEY"))
        monkeypatch.setenv("MY_KEY", "sk-test")
        served = load_reasoner(served_config(tiny_config, url, api_key_env="MY_KEY"))
        try:
            assert served.segment(keyed(make_tiles(1)), ["park"])[0][0].mask.shape == (112, 112)
        finally:
            served.close()


def test_a_server_killed_mid_run_fails_the_call_after_retries(tiny_dir, tiny_config):
    with openai_server(tiny_dir / "vlm", "--die-after", "2", "--max-batch", "1") as (url, proc):
        served = load_reasoner(served_config(tiny_config, url, concurrency=1))
        try:
            with pytest.raises(ServerUnavailableError, match="APIConnectionError"):
                served.segment(keyed(make_tiles(2)), ["park", "school"])
        finally:
            served.close()
        assert proc.wait(timeout=10) == 3


def test_openai_engine_needs_an_endpoint():
    from sociomap.errors import ConfigError

    with pytest.raises(ConfigError, match="--endpoint"):
        ReasonerConfig(engine="openai")


def test_the_documented_vllm_command_is_the_one_errors_print():
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "serving.md").read_text()
    block = text.split("```bash\n", 1)[1].split("\nsociomap run", 1)[0]
    assert " ".join(block.replace("\\\n", " ").split()) == VLLM_COMMAND
