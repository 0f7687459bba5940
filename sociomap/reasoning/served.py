"""The openai engine: SocioReasoner with the VLM behind an OpenAI-compatible server (vLLM, SGLang), SAM in-process.

Per request (one stage of one (tile, query)): one user turn [map, satellite, text], the images as lossless PNG
data URIs of the model-input images (the reference hands vLLM images already resized 768 -> 756, which every Qwen
processor keeps as they are), the byte-identical reference prompt, and every sampling field explicit
(sampling.request_fields), with a seed per (tile, query, stage) when the run has --seed.

Pipelining: each (tile, query) is a coroutine that holds one of `concurrency` slots from its stage-1 request to
its final mask, so at most `concurrency` requests are in flight and a pair goes on to stage 2 as soon as its own
stage 1 and coarse mask are done. SAM is not thread-safe: every SAM call runs on one dedicated thread, and the
SAM requests that queue while it is busy are decoded together, per tile (`SamBatcher`). Rendering and PNG
encoding run in a small thread pool. The event loop lives in a background thread, so segment() can be called from
several threads of a Dask worker at once and they share the connection pool and the concurrency bound.

Faults: the openai SDK retries 408/409/429/5xx, timeouts and lost connections `request_retries` times with
exponential backoff (0.5 s doubling to 8 s, or the server's Retry-After). What still fails raises
ServerUnavailableError (not a SociomapError: the pipeline lists the tiles as failed and a re-run retries them);
any other 4xx raises ModelServerError (exit 4, the same for every tile, with the server's message).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from sociomap.errors import ModelServerError
from sociomap.reasoning.config import API_KEY_ENVS, QueryResult, ReasonerConfig, TilePair
from sociomap.reasoning.parse import parse_object_prompts
from sociomap.reasoning.prompts import stage1_prompt
from sociomap.reasoning.reasoner import PairState, PreparedTile, query_result, stage2_inputs
from sociomap.reasoning.sam import SamBackend, Segmented, segment_queries
from sociomap.reasoning.sampling import request_fields, stage_seed
from sociomap.reasoning.vlm import MAX_PIXELS, MIN_PIXELS, Generation, resize_for_model
from sociomap.reasoning.weights import Weights

logger = logging.getLogger(__name__)

# How to start a server that reproduces the reference (docs/serving.md explains each flag).
VLLM_COMMAND = ("vllm serve vvangfaye/SocioReasoner-3B --port 8000 --generation-config vllm "
                "--enable-prefix-caching --limit-mm-per-prompt '{\"image\": 2}' "
                f"--mm-processor-kwargs '{{\"max_pixels\": {MAX_PIXELS}, \"min_pixels\": {MIN_PIXELS}}}' "
                "--max-model-len 8192 --gpu-memory-utilization 0.8")
SPECIAL_TOKEN = re.compile(r"<\|[A-Za-z0-9_]+\|>")  # Qwen's special tokens: <|im_end|>, <|endoftext|>, ...
CHECK_TIMEOUT_S = 10.0  # the start-up check: a server that does not list its models in 10 s is not usable


class ServerUnavailableError(ConnectionError):
    """The model server did not answer (or answered 429/5xx) after every retry: the tiles fail, a re-run retries."""


@dataclass(frozen=True)
class ServedModel:
    """What the server says it serves (GET /models): the id requests use, and the weights it was started from."""

    endpoint: str
    id: str
    root: str = ""
    max_model_len: int | None = None


def api_key(config: ReasonerConfig) -> str:
    """The API key from the named environment variable (else SOCIOMAP_API_KEY, OPENAI_API_KEY); vLLM started
    without --api-key accepts any, and the SDK needs a non-empty one."""
    names = [config.api_key_env] if config.api_key_env else list(API_KEY_ENVS)
    return next((os.environ[n] for n in names if os.environ.get(n)), "EMPTY")


def _status_error(exc: Exception, endpoint: str, config: ReasonerConfig) -> ModelServerError:
    """A 4xx answer as one clear line: what the server said and what to do."""
    status = getattr(exc, "status_code", "?")
    message = _server_message(exc)
    if status in (401, 403):
        names = config.api_key_env or " or ".join(API_KEY_ENVS)
        hint = f"set the server's API key in ${names}"
    elif status == 404:
        hint = f"pass --model with a model the server serves, or start it with `{VLLM_COMMAND}`"
    elif "context length" in message or "too long" in message:
        hint = "start the server with a larger --max-model-len, or lower --max-new-tokens"
    else:
        hint = "check the server's log"
    return ModelServerError(f"model server {endpoint} refused a request (HTTP {status}: {message}): {hint}")


def _server_message(exc: Exception) -> str:
    """The error message in an OpenAI-style error body ({"message": ...} or {"error": {"message": ...}})."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:500]
    return str(exc)[:500]


def check_server(config: ReasonerConfig) -> ServedModel:
    """Start-up check: the server answers GET /models and serves config.model; ModelServerError (exit 4) naming
    the command that starts one otherwise. Never sends the API key anywhere but the endpoint."""
    import openai

    endpoint = config.endpoint.rstrip("/")
    client = openai.OpenAI(base_url=endpoint, api_key=api_key(config), timeout=CHECK_TIMEOUT_S, max_retries=1)
    try:
        models = client.models.list().data
    except openai.APIStatusError as exc:
        if exc.status_code == 404:
            raise ModelServerError(f"{endpoint}/models is not found: --endpoint is the API base URL, e.g. "
                                   "http://127.0.0.1:8000/v1") from exc
        raise _status_error(exc, endpoint, config) from exc
    except openai.APIError as exc:  # connection refused, DNS, timeout, not an OpenAI API
        raise ModelServerError(f"no model server answers at {endpoint} ({type(exc).__name__}: {exc}): start one, "
                               f"e.g. `{VLLM_COMMAND}` (docs/serving.md), or fix --endpoint") from exc
    finally:
        client.close()
    for model in models:
        if model.id == config.model:
            extra = model.model_extra or {}
            return ServedModel(endpoint, model.id, str(extra.get("root") or ""), extra.get("max_model_len"))
    served = ", ".join(m.id for m in models) or "nothing"
    raise ModelServerError(f"the server at {endpoint} serves {served}, not {config.model!r}: pass --model with the "
                           f"served id, or start one for it, e.g. `{VLLM_COMMAND}`")


def png_data_uri(image: Image.Image) -> str:
    """Lossless PNG data URI (compress level 1: the pixels are what matter, and it is 4x faster than 6)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def strip_special_tokens(raw: str) -> str:
    """The text without Qwen's <|...|> special tokens, as decoding with skip_special_tokens=True gives it."""
    return SPECIAL_TOKEN.sub("", raw)


@dataclass
class ServedTile(PreparedTile):
    """A prepared tile plus its PNG data URIs (shared by the stage-1 requests of all its queries) and the future
    of its SAM embedding (started at once on the SAM thread; `embedding` is set when the first mask needs it)."""

    uris: list[str] = field(default_factory=list)
    embedded: asyncio.Future | None = None


class SamBatcher:
    """Serializes SAM on one thread and batches what queues meanwhile: each run decodes every waiting request,
    per tile, in one segment_queries call (so the queries of a tile that reach SAM together share calls)."""

    def __init__(self, sam: SamBackend, executor: ThreadPoolExecutor):
        self.sam, self.executor = sam, executor
        self.waiting: list[tuple[ServedTile, list, asyncio.Future]] = []
        self.running = False

    async def segment(self, tile: ServedTile, prompts: list) -> Segmented:
        """The union mask and scores of these object prompts on this tile's embedding."""
        tile.embedding = await tile.embedded
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((tile, prompts, future))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Run batches until nothing waits."""
        loop = asyncio.get_running_loop()
        try:
            while self.waiting:
                jobs, self.waiting = self.waiting, []
                try:
                    results = await loop.run_in_executor(self.executor, self._run, jobs)
                except Exception as exc:  # e.g. CUDA out of memory: every waiting pair gets the error
                    for _, _, future in jobs:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), result in zip(jobs, results):
                    if not future.done():
                        future.set_result(result)
        finally:
            self.running = False

    def _run(self, jobs: list) -> list[Segmented]:
        """On the SAM thread: one segment_queries call per tile over all its waiting requests."""
        results: list[Segmented | None] = [None] * len(jobs)
        by_tile: dict[int, list[int]] = {}
        for index, (tile, _, _) in enumerate(jobs):
            by_tile.setdefault(id(tile), []).append(index)
        for indexes in by_tile.values():
            tile = jobs[indexes[0]][0]
            for index, segmented in zip(indexes, segment_queries(self.sam, tile.embedding,
                                                                 [jobs[i][1] for i in indexes])):
                results[index] = segmented
        return results


class _Loop:
    """An asyncio event loop in a daemon thread; run() submits a coroutine from any thread and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="sociomap-openai", daemon=True).start()

    def run(self, coroutine: object) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()


class ServedReasoner:
    """SocioReasoner with stage 1 and 2 sent to an OpenAI-compatible server; same results contract as SocioReasoner."""

    def __init__(self, config: ReasonerConfig, sam: SamBackend, sam_weights: Weights, served: ServedModel):
        self.config, self.sam, self.sam_weights, self.served = config, sam, sam_weights, served
        self.sam_thread = ThreadPoolExecutor(1, thread_name_prefix="sociomap-sam")
        self.cpu_threads = ThreadPoolExecutor(2, thread_name_prefix="sociomap-render")
        self._loop = _Loop()
        self._loop.run(self._start())
        self.completion_tokens = 0  # generated tokens so far (benchmarks report tokens/s)

    async def _start(self) -> None:
        """Client, concurrency bound and SAM batcher, created inside the loop they belong to."""
        import openai

        self.client = openai.AsyncOpenAI(base_url=self.config.endpoint.rstrip("/"), api_key=api_key(self.config),
                                         timeout=self.config.request_timeout, max_retries=self.config.request_retries)
        self.slots = asyncio.Semaphore(self.config.concurrency)
        self.batcher = SamBatcher(self.sam, self.sam_thread)

    def identity(self) -> dict[str, str]:
        """Everything that determines results (cache key + manifest); values are strings."""
        from sociomap.reasoning.identity import reasoner_identity

        return reasoner_identity(self.config)

    def segment(self, tiles: Sequence[TilePair], queries: Sequence[str]) -> list[list[QueryResult]]:
        """result[i][j] for tile i and query j; bad model text gives empty masks, server faults raise."""
        results = self._loop.run(self._segment(list(tiles), list(queries)))
        return [results[i * len(queries):(i + 1) * len(queries)] for i in range(len(tiles))]

    async def _segment(self, tiles: list[TilePair], queries: list[str]) -> list[QueryResult]:
        """All pairs as tasks, tile-major, each tile's started as soon as that tile is prepared; the first failure
        cancels the rest and is raised as itself."""
        tasks = []
        try:
            async with asyncio.TaskGroup() as group:
                for index, tile in enumerate(tiles):
                    prepared = await self._prepare(tile)
                    tasks += [group.create_task(self._pair(PairState(tile=index, query=q), prepared)) for q in queries]
        except BaseExceptionGroup as errors:
            raise _first_error(errors) from None
        return [task.result() for task in tasks]

    async def _prepare(self, tile: TilePair) -> ServedTile:
        """Model-input images and their PNG data URIs (thread pool); the SAM embedding starts on the SAM thread."""
        loop = asyncio.get_running_loop()

        def images_and_uris() -> tuple[list[Image.Image], list[str]]:
            images = [resize_for_model(tile.map), resize_for_model(tile.satellite)]
            return images, [png_data_uri(image) for image in images]

        images, uris = await loop.run_in_executor(self.cpu_threads, images_and_uris)
        prepared = ServedTile(tile.size, tile.key, images, None, uris)
        prepared.embedded = loop.run_in_executor(self.sam_thread, self.sam.embed, np.asarray(images[1]))
        return prepared

    async def _pair(self, pair: PairState, tile: ServedTile) -> QueryResult:
        """Stage 1 -> coarse mask -> render -> stage 2 -> final mask for one (tile, query), holding one slot."""
        async with self.slots:
            first = await self._complete(stage1_prompt(pair.query), tile.uris, self._seed(tile, pair, 1))
            pair.stage1, pair.stage1_raw = first.text, first.raw
            pair.coarse_prompts = parse_object_prompts(first.text)
            pair.coarse = await self.batcher.segment(tile, pair.coarse_prompts)
            text, uris = await asyncio.get_running_loop().run_in_executor(self.cpu_threads, self._stage2_request,
                                                                          pair, tile)
            second = await self._complete(text, uris, self._seed(tile, pair, 2))
            pair.stage2, pair.final_prompts = second.text, parse_object_prompts(second.text)
            pair.final = await self.batcher.segment(tile, pair.final_prompts)
        return query_result(pair, tile)

    def _stage2_request(self, pair: PairState, tile: ServedTile) -> tuple[str, list[str]]:
        """Stage-2 text and image URIs; images that came back unchanged (nothing drawn) reuse the tile's URIs."""
        text, images = stage2_inputs(pair, tile)
        return text, [uri if image is same else png_data_uri(image)
                      for image, same, uri in zip(images, tile.images, tile.uris)]

    def _seed(self, tile: ServedTile, pair: PairState, stage: int) -> int | None:
        """The request's own seed, from (seed, tile key, query, stage); None when the run is unseeded."""
        return stage_seed(self.config.seed, tile.key, pair.query, stage)

    async def _complete(self, text: str, uris: list[str], seed: int | None) -> Generation:
        """One chat completion; the raw text (special tokens kept) and the text without them."""
        import openai

        config = self.config
        fields, extra = request_fields(config.greedy, config.temperature, config.top_p, config.top_k,
                                       config.max_new_tokens, seed)
        extra["mm_processor_kwargs"] = {"max_pixels": MAX_PIXELS, "min_pixels": MIN_PIXELS}
        content = [{"type": "image_url", "image_url": {"url": uri}} for uri in uris] + [{"type": "text", "text": text}]
        try:
            response = await self.client.chat.completions.create(
                model=self.served.id, messages=[{"role": "user", "content": content}], extra_body=extra, **fields)
        except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError) as exc:
            raise ServerUnavailableError(
                f"model server {self.served.endpoint} failed after {config.request_retries} retries "
                f"({type(exc).__name__}: {_server_message(exc)}); if it is slow, raise --request-timeout "
                f"(now {config.request_timeout:g} s)") from exc
        except openai.APIStatusError as exc:
            raise _status_error(exc, self.served.endpoint, config) from exc
        if response.usage is not None:
            self.completion_tokens += response.usage.completion_tokens or 0
        raw = response.choices[0].message.content or ""
        return Generation(text=strip_special_tokens(raw), raw=raw)

    def close(self) -> None:
        """Close the HTTP client and stop the loop and the threads (tests; a worker just exits)."""
        self._loop.run(self.client.close())
        self._loop.loop.call_soon_threadsafe(self._loop.loop.stop)
        self.sam_thread.shutdown()
        self.cpu_threads.shutdown()


def _first_error(errors: BaseExceptionGroup) -> BaseException:
    """The first leaf exception of a TaskGroup failure (the others are its cancellations)."""
    first = errors.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first
