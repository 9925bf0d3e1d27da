"""A real vLLM's KV events: the gateway repeats the model's chat template and tokenizer (a real BPE
trained here with the `tokenizers` library, ChatML as Qwen and SmolLM2 use it) and finds a chat's
blocks in events encoded with vLLM's own schema, sent over ZeroMQ."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zmq
import zmq.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from mercato.gateway.core.affinity import CacheAffinity
from mercato.gateway.core.hf_tokenizer import HFTokenizer, TokenizerError, load_tokenizer
from mercato.gateway.core.prefix import PrefixLedger
from mercato.gateway.core.prompt_blocks import TokenizerPromptBlocks
from mercato.gateway.core.types import BuyerReport, RouteRequest
from mercato.gateway.live.config import ConfigError, parse_config
from mercato.gateway.live.kv_subscriber import KVEventSubscriber, kv_index
from mercato.gateway.live.metrics import GatewayMetrics
from mercato.ports import free_port
from vllm_kv_schema import BlockStored, KVEventBatch

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
          "+ '<|im_end|>' + '\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = ["the quiet harbour at dawn holds boats and gulls", "who wrote the report on the tides?"] * 50
BLOCK = 4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE trained on a small corpus, BOS added for raw prompts, ChatML as its template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A",
                                                       special_tokens=[("<|endoftext|>", 0)])
    directory = tmp_path_factory.mktemp("model")
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": CHATML, "bos_token": "<|endoftext|>",
         "eos_token": {"content": "<|im_end|>", "special": True}}))
    return directory


CHAT = [{"role": "system", "content": "answer briefly"},
        {"role": "user", "content": "who wrote the report on the tides?"}]


def test_the_chat_template_renders_as_transformers_does_and_special_tokens_are_single_ids(model_dir):
    tok = HFTokenizer(model_dir)
    text = tok.render(CHAT)
    assert text == ("<|im_start|>system\nanswer briefly<|im_end|>\n"
                    "<|im_start|>user\nwho wrote the report on the tides?<|im_end|>\n<|im_start|>assistant\n")
    ids = tok.chat_ids(CHAT)
    start, end = tok.tokenizer.token_to_id("<|im_start|>"), tok.tokenizer.token_to_id("<|im_end|>")
    assert ids.count(start) == 3 and ids.count(end) == 2 and ids[0] == start  # no BOS added on top
    assert tok.tokenizer.decode(ids, skip_special_tokens=False) == text
    assert tok.prompt_ids("the tides")[0] == 0  # a completion's raw prompt gets BOS
    assert tok.prompt_ids("the tides")[1:] == tok.tokenizer.encode("the tides", add_special_tokens=False).ids


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["user", "assistant", "system"]),
                          st.text(alphabet=" abehtoqrsuw?\n<|>_éß", max_size=40)), min_size=1, max_size=5))
def test_encoding_piece_by_piece_between_added_tokens_gives_the_whole_texts_ids(model_dir, turns):
    tok = load_tokenizer(str(model_dir))
    messages = [{"role": role, "content": content} for role, content in turns]
    whole = tok.tokenizer.encode(tok.render(messages), add_special_tokens=False).ids
    assert tok.chat_ids(messages) == whole
    assert tok.chat_ids(messages) == whole  # and again from the remembered pieces


def test_a_named_template_list_and_template_errors(model_dir, tmp_path):
    (tmp_path / "tokenizer.json").write_text((model_dir / "tokenizer.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template":
                           "{% if messages|length > 1 %}{{ raise_exception('one message only') }}{% endif %}"
                           "{{ messages[0]['content'] | tojson }}"}]}))
    tok = HFTokenizer(tmp_path)
    assert tok.render([{"role": "user", "content": "café"}]) == '"café"'  # tojson keeps non-ASCII
    with pytest.raises(Exception, match="one message only"):
        tok.render(CHAT)


@pytest.mark.parametrize("files, message", [
    ({}, "no tokenizer.json"),
    ({"tokenizer.json": "{not json"}, "cannot load"),
    ({"tokenizer.json": None}, "no tokenizer_config.json"),
    ({"tokenizer.json": None, "tokenizer_config.json": "{}"}, "no chat template"),
    ({"tokenizer.json": None, "tokenizer_config.json": '{"chat_template": "{% if %}"}'}, "does not parse"),
])
def test_a_model_directory_the_gateway_cannot_use_says_what_is_missing(model_dir, tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text((model_dir / name).read_text() if text is None else text)
    with pytest.raises(TokenizerError, match=message):
        HFTokenizer(tmp_path)


def test_the_config_names_the_field_of_an_unusable_tokenizer(model_dir, tmp_path):
    def backend(tokenizer: str) -> dict:
        return {"name": "v", "url": "http://127.0.0.1:1/v1", "model": "m",
                "prices": {"input": 1.0, "cached_input": 0.1, "output": 2.0},
                "kv_events": {"endpoint": "tcp://127.0.0.1:5557", "tokenizer": tokenizer}}

    with pytest.raises(ConfigError, match=r"backends\.0\.kv_events\.tokenizer: .*no tokenizer\.json"):
        parse_config({"backends": [backend(f"hf:{tmp_path}")]})
    config = parse_config({"backends": [backend(f"hf:{model_dir}")]})
    index = kv_index(config)
    assert index is not None and isinstance(index.prompt_blocks("v"), TokenizerPromptBlocks)
    assert load_tokenizer(str(model_dir)) is load_tokenizer(str(model_dir))  # loaded once per model


def _request(messages: list[dict[str, str]] | None, prompt: str = "x") -> RouteRequest:
    return RouteRequest(request_id="r", prompt=prompt, prompt_tokens=10, max_tokens=16, session_id="s",
                        turn=1, domain=None, source=None, buyer="b", report=BuyerReport(), arrival=0.0,
                        messages=messages)


def test_only_the_full_blocks_before_the_last_token_can_hit(model_dir):
    tok = HFTokenizer(model_dir)
    blocks = TokenizerPromptBlocks(tok)
    ids = tok.chat_ids(CHAT)
    keys, length = blocks.blocks(_request(CHAT), BLOCK)
    assert length == len(ids) and len(keys) == (len(ids) - 1) // BLOCK
    raw_keys, raw_length = blocks.blocks(_request(None, "the quiet harbour"), BLOCK)
    assert raw_length == len(tok.prompt_ids("the quiet harbour"))
    assert len(raw_keys) == (raw_length - 1) // BLOCK


def test_the_gateway_finds_a_chat_in_a_vllm_engines_events(model_dir):
    """A publisher built from vLLM's schema stores the first turn's blocks as vLLM would (token ids
    of the templated chat, engine hashes of its own); the next turn's affinity finds them."""
    tok = HFTokenizer(model_dir)
    first_turn = tok.chat_ids(CHAT)
    cached = (len(first_turn) - 1) // BLOCK * BLOCK
    reply = [*CHAT, {"role": "assistant", "content": "the harbour master"},
             {"role": "user", "content": "and the boats?"}]
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = parse_config({"backends": [
        {"name": "vllm", "url": "http://127.0.0.1:1/v1", "model": "m",
         "prices": {"input": 1.0, "cached_input": 0.1, "output": 2.0},
         "kv_events": {"endpoint": endpoint, "topic": "kv", "tokenizer": f"hf:{model_dir}"}},
        {"name": "other", "url": "http://127.0.0.1:2/v1", "model": "m",
         "prices": {"input": 1.0, "cached_input": 0.1, "output": 2.0}}]})
    index = kv_index(config)
    assert index is not None

    async def scenario() -> None:
        ctx = zmq.asyncio.Context()
        pub = ctx.socket(zmq.PUB)
        pub.bind(endpoint)
        source = config.backend("vllm").kv_events
        assert source is not None
        sub = KVEventSubscriber("vllm", source, index, GatewayMetrics(), ctx)
        task = asyncio.create_task(sub.run())
        deadline = time.monotonic() + 5
        while not sub.connected:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        hashes = [f"h{k}".encode() for k in range(cached // BLOCK)]  # vLLM's hashes are opaque to the gateway
        event = BlockStored(hashes, None, first_turn[:cached], BLOCK, None, "GPU", None)
        payload = msgspec.msgpack.encode(KVEventBatch(time.time(), [event]))
        await pub.send_multipart([b"kv", (0).to_bytes(8, "big"), payload])
        while index.blocks("vllm") < len(hashes):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        ctx.destroy(linger=0)

    asyncio.run(scenario())
    assert index.exact("vllm")
    out = np.zeros(2)
    CacheAffinity(["vllm", "other"], PrefixLedger(["vllm", "other"]), index).affinity_row(
        _request(reply, prompt="rendered by mercato"), out)
    assert out[0] == pytest.approx(cached / len(tok.chat_ids(reply)))
    assert out[0] > 0.5 and out[1] == 0.0
    stranger = [{"role": "user", "content": "the quiet harbour at dawn"}]
    CacheAffinity(["vllm", "other"], PrefixLedger(["vllm", "other"]), index).affinity_row(
        _request(stranger, prompt="other"), out := np.zeros(2))
    assert out[0] == 0.0  # another chat shares no block with the cached one
