"""A small OpenAI chat-completions server for the tests: serves a Qwen2.5-VL checkpoint folder as `vllm serve`
does for sociomap's requests (vLLM itself cannot be installed on these machines, see docs/serving.md).

    python tests/reasoning/openai_server.py MODEL_DIR [--served-model-name NAME] [--port 0] [--max-batch 8] ...

What it shares with vLLM: /v1/models (id, root, max_model_len) and /v1/chat/completions; images as data-URI PNGs;
the processor's chat template over [image, image, text] with the generation prompt; image pixel limits from
--max-pixels/--min-pixels or a request's mm_processor_kwargs; the decoding fields temperature (0 = greedy), top_p,
top_k (-1/0 = off), repetition_penalty, seed (own generator per request), max_tokens, skip_special_tokens; the
checkpoint's generation_config ignored (`--generation-config vllm`); stop on the tokenizer's and the checkpoint's
EOS; 400 when prompt + max_tokens exceed --max-model-len; 404 for an unknown model; 401 without the --api-key.
Requests arriving together are generated as one left-padded batch (up to --max-batch rows with equal decoding
settings), like continuous batching. This is transformers' plain generate(), independent of sociomap's engine.

Fault switches: --delay S (every answer waits S seconds), --die-after N (the process exits abruptly when the
request after the N-th completion arrives). --log-requests FILE appends one JSON line per chat request (its body
with each image replaced by its size and pixel digest, arrival/answer times, requests in flight on arrival).
Prints "READY <base url>" on stdout once it listens.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import queue
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
from PIL import Image
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, Qwen2_5_VLForConditionalGeneration
from transformers.generation.logits_process import (RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                                                    TopKLogitsWarper, TopPLogitsWarper)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from sociomap.reasoning.vlm import TileVLProcessor  # noqa: E402  (the processor class that loads without torchvision)


class RequestError(Exception):
    """An OpenAI-style error answer."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind = status, kind


class SeededMultinomial(LogitsProcessor):
    """Each row samples with its own torch.Generator (vLLM: a per-request generator when `seed` is given)."""

    def __init__(self, seeds: list[int | None]):
        self.generators = [torch.Generator().manual_seed(s if s is not None else int(torch.randint(2**62, ())))
                           for s in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores.float(), dim=-1)
        picks = [int(torch.multinomial(probs[r], 1, generator=g)) for r, g in enumerate(self.generators)]
        out = torch.full_like(scores, -float("inf"))
        out[torch.arange(len(picks)), picks] = 0.0
        return out


@dataclass
class Job:
    """One accepted chat completion waiting for the batch worker."""

    prompt: str
    images: list[Image.Image]
    prompt_tokens: int
    max_tokens: int
    seed: int | None
    skip_special: bool
    settings: tuple  # (temperature, top_p, top_k, repetition_penalty, min_pixels, max_pixels): batch key
    result: Future = field(default_factory=Future)


class Server:
    """Model, processor and the batch worker."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.processor = TileVLProcessor.from_pretrained(args.model)
        self.processor.tokenizer.padding_side = "left"
        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.model, use_safetensors=True).eval()
        tokenizer = self.processor.tokenizer
        eos = self.model.generation_config.eos_token_id
        self.stops = set([eos] if isinstance(eos, int) else list(eos or [])) | {tokenizer.eos_token_id}
        self.name = args.served_model_name or args.model
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.completed = 0
        self.in_flight, self.lock = 0, threading.Lock()
        threading.Thread(target=self._work, daemon=True).start()

    def log(self, body: dict, arrived: float, in_flight: int) -> None:
        """One JSON line per request for the tests (--log-requests)."""
        if not self.args.log_requests:
            return
        body = json.loads(json.dumps(body))
        for message in body.get("messages", []):
            for part in message["content"] if isinstance(message["content"], list) else []:
                if part.get("type") == "image_url":
                    image = Image.open(io.BytesIO(base64.b64decode(part["image_url"]["url"].split(",", 1)[1])))
                    part["image_url"] = {"size": list(image.size), "format": image.format,
                                         "sha256": hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()}
        with self.lock, open(self.args.log_requests, "a") as handle:
            handle.write(json.dumps({"body": body, "arrived": arrived, "answered": time.time(),
                                     "in_flight": in_flight}) + "\n")

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "created": int(time.time()),
                                            "owned_by": "sociomap-tests", "root": str(self.args.model),
                                            "max_model_len": self.args.max_model_len}]}

    def accept(self, body: dict) -> Job:
        """Validate a request as vLLM would and turn it into a Job."""
        if body.get("model") != self.name:
            raise RequestError(404, "NotFoundError", f"The model `{body.get('model')}` does not exist.")
        if body.get("n", 1) != 1 or body.get("stream"):
            raise RequestError(400, "BadRequestError", "only n=1, non-streaming requests are served here")
        mm = body.get("mm_processor_kwargs") or {}
        min_pixels, max_pixels = mm.get("min_pixels", self.args.min_pixels), mm.get("max_pixels", self.args.max_pixels)
        content, images = [], []
        for message in body.get("messages", []):
            parts = message["content"] if isinstance(message["content"], list) else [
                {"type": "text", "text": message["content"]}]
            items = []
            for part in parts:
                if part["type"] == "image_url":
                    url = part["image_url"]["url"]
                    if not url.startswith("data:image/"):
                        raise RequestError(400, "BadRequestError", "only data: image URLs are served here")
                    images.append(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))
                    items.append({"type": "image"})
                else:
                    items.append({"type": "text", "text": part["text"]})
            content.append({"role": message["role"], "content": items})
        prompt = self.processor.apply_chat_template(content, tokenize=False, add_generation_prompt=True)
        image_tokens = sum(h * w // 28 // 28 for h, w in (smart_resize(im.height, im.width, factor=28,
                                                                       min_pixels=min_pixels, max_pixels=max_pixels)
                                                          for im in images))
        prompt_tokens = len(self.processor.tokenizer(prompt)["input_ids"]) + image_tokens - len(images)
        max_tokens = int(body.get("max_tokens") or self.args.max_model_len - prompt_tokens)
        if prompt_tokens + max_tokens > self.args.max_model_len:
            raise RequestError(400, "BadRequestError", (
                f"This model's maximum context length is {self.args.max_model_len} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
                "completion). Please reduce the length of the messages or completion."))
        top_k = int(body.get("top_k", -1))
        settings = (float(body.get("temperature", 1.0)), float(body.get("top_p", 1.0)), 0 if top_k < 0 else top_k,
                    float(body.get("repetition_penalty", 1.0)), min_pixels, max_pixels)
        return Job(prompt, images, prompt_tokens, max_tokens, body.get("seed"),
                   bool(body.get("skip_special_tokens", True)), settings)

    def _work(self) -> None:
        """Take the oldest job and every waiting job with its settings (up to --max-batch); generate them together."""
        held: list[Job] = []
        while True:
            first = held.pop(0) if held else self.jobs.get()
            if self.args.die_after is not None and self.completed >= self.args.die_after:
                os._exit(3)  # killed mid-run: no answer, the port closes
            batch = [first]
            time.sleep(self.args.batch_wait)
            while True:
                try:
                    held.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            for job in list(held):
                if len(batch) < self.args.max_batch and job.settings == first.settings:
                    batch.append(job)
                    held.remove(job)
            try:
                texts = self._generate(batch)
            except Exception as exc:  # answered as a 500
                for job in batch:
                    job.result.set_exception(exc)
                continue
            for job, answer in zip(batch, texts):
                job.result.set_result(answer)
            self.completed += len(batch)

    @torch.inference_mode()
    def _generate(self, batch: list[Job]) -> list[tuple[str, int, str]]:
        temperature, top_p, top_k, penalty, min_pixels, max_pixels = batch[0].settings
        self.processor.image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
        inputs = self.processor(text=[j.prompt for j in batch], images=[im for j in batch for im in j.images],
                                padding=True, return_tensors="pt")
        processors = LogitsProcessorList()
        if penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(penalty))
        if temperature > 0:
            if temperature != 1.0:
                processors.append(TemperatureLogitsWarper(temperature))
            if top_k:
                processors.append(TopKLogitsWarper(top_k))
            if top_p < 1.0:
                processors.append(TopPLogitsWarper(top_p))
            processors.append(SeededMultinomial([j.seed for j in batch]))
        config = GenerationConfig(do_sample=False, max_new_tokens=max(j.max_tokens for j in batch),
                                  eos_token_id=sorted(self.stops), pad_token_id=self.processor.tokenizer.pad_token_id)
        self.model.generation_config = config  # never the checkpoint's defaults (vLLM: --generation-config vllm)
        out = self.model.generate(**inputs, generation_config=config, logits_processor=processors)
        answers = []
        for job, row in zip(batch, out[:, inputs["input_ids"].shape[1]:].tolist()):
            row = row[:job.max_tokens]
            stop = next((i for i, t in enumerate(row) if t in self.stops), None)
            tokens, reason = (row[:stop], "stop") if stop is not None else (row, "length")
            answers.append((self.processor.tokenizer.decode(tokens, skip_special_tokens=job.skip_special),
                            len(tokens) + (stop is not None), reason))
        return answers


def make_handler(server: Server, args: argparse.Namespace) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: object) -> None:  # quiet
            pass

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, exc: RequestError) -> None:
            self._send(exc.status, {"error": {"message": str(exc), "type": exc.kind, "param": None,
                                              "code": exc.status}})

        def _authorized(self) -> bool:
            if args.api_key and self.headers.get("Authorization") != f"Bearer {args.api_key}":
                self._error(RequestError(401, "AuthenticationError", "Unauthorized"))
                return False
            return True

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/health":
                return self._send(200, {})
            if not self._authorized():
                return None
            if self.path.rstrip("/") == "/v1/models":
                return self._send(200, server.models())
            return self._error(RequestError(404, "NotFoundError", f"no route {self.path}"))

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if not self._authorized():
                return None
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._error(RequestError(404, "NotFoundError", f"no route {self.path}"))
            arrived = time.time()
            with server.lock:
                server.in_flight += 1
                in_flight = server.in_flight
            try:
                return self._complete(body, arrived, in_flight)
            finally:
                with server.lock:
                    server.in_flight -= 1

        def _complete(self, body: dict, arrived: float, in_flight: int) -> None:
            try:
                job = server.accept(body)
            except RequestError as exc:
                return self._error(exc)
            server.jobs.put(job)
            try:
                text, tokens, reason = job.result.result()
            except Exception as exc:
                return self._error(RequestError(500, "InternalServerError", repr(exc)))
            time.sleep(args.delay)
            server.log(body, arrived, in_flight)
            return self._send(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": server.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason}],
                "usage": {"prompt_tokens": job.prompt_tokens, "completion_tokens": tokens,
                          "total_tokens": job.prompt_tokens + tokens}})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--served-model-name")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key")
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--max-pixels", type=int, default=12845056)  # Qwen2.5-VL's processor default
    parser.add_argument("--min-pixels", type=int, default=3136)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--batch-wait", type=float, default=0.005, help="seconds to gather a batch")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--die-after", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-requests")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    server = Server(args)
    httpd = ThreadingHTTPServer((args.host, args.port), make_handler(server, args))
    httpd.daemon_threads = True
    print(f"READY http://{args.host}:{httpd.server_address[1]}/v1", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
