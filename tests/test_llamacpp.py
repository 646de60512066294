"""Opt-in (`pytest -m llamacpp`): llama.cpp itself runs our GGUF exports.

Builds llama-cpp-python from its PyPI sdist (cmake and g++; about half an hour on 2 busy
cores) into $CLLM_LLAMACPP_DIR (default ~/.cache/cllm-pipeline/llama-cpp-python; a second run
reuses it), then checks, for GPT-2 and Llama, that llama.cpp tokenizes text as our tokenizer
does and that its greedy tokens equal ours. llama.cpp runs in a child process: a crash there
fails the test instead of ending pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model.evaluate import load_model
from model.export import GGUF_NAME, export_model
from model.sample import generate_ids
from model.tiny import corpus, make_shards, tiny_config
from model.train import train
from pipeline.config import SampleConfig
from pipeline.layout import DataRoot

pytestmark = [pytest.mark.llamacpp, pytest.mark.slow, pytest.mark.timeout(7200)]

PACKAGE = "llama-cpp-python>=0.3"
CONTEXT = 96
PROMPTS = ("The quiet river", "Every old engine counts")
RECIPES = {"gpt2": {}, "llama": {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu"}}

GREEDY = """
import json, sys
import numpy as np
import llama_cpp

job = json.load(sys.stdin)
llm = llama_cpp.Llama(model_path=job["model"], n_ctx=job["context"], n_batch=job["context"],
                      logits_all=True, verbose=False)
out = {"tokens": [llm.tokenize(t.encode(), add_bos=False, special=True) for t in job["texts"]],
       "greedy": []}
for prompt in job["prompts"]:
    llm.reset()
    llm.eval(prompt)
    new = []
    for _ in range(job["new"]):
        new.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([new[-1]])
    out["greedy"].append(new)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def llama_cpp_dir() -> Path:
    folder = Path(os.environ.get("CLLM_LLAMACPP_DIR",
                                 Path.home() / ".cache" / "cllm-pipeline" / "llama-cpp-python"))
    if not (folder / "llama_cpp" / "__init__.py").is_file():
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-binary",
                        "llama-cpp-python", "--target", str(folder), PACKAGE], check=True)
    return folder


@pytest.mark.parametrize("recipe", RECIPES)
def test_llama_cpp_tokenizes_as_we_do_and_its_greedy_tokens_are_ours(
        recipe: str, llama_cpp_dir: Path, tmp_path: Path) -> None:
    root = DataRoot.at(tmp_path / "data")
    make_shards(root, corpus(docs=60))
    cfg = tiny_config(run=recipe, n_layer=2, n_embd=48, block_size=CONTEXT, max_steps=300,
                      lr=1e-2, min_lr=1e-3, eval_interval=100, save_interval=100,
                      **RECIPES[recipe])
    checkpoint = train(cfg, root, progress=False).best_checkpoint
    export_model(checkpoint, tmp_path / "gguf", "gguf")
    model, meta = load_model(checkpoint)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(meta["tokenizer"]["json"])
    texts = [*corpus(docs=3, seed=7), "Fjörð, café — naïve 日本語 😀\n\n\tindented."]
    prompts = [tok.encode(p).ids for p in PROMPTS]
    greedy = SampleConfig(max_new_tokens=64, temperature=0.0, stop_at_eos=False)
    ours = [list(generate_ids(model, p, greedy, int(meta["tokenizer"]["eos_id"])))
            for p in prompts]
    job = {"model": str(tmp_path / "gguf" / GGUF_NAME), "context": CONTEXT, "texts": texts,
           "prompts": prompts, "new": 64}
    env = {**os.environ, "PYTHONPATH": str(llama_cpp_dir)}
    done = subprocess.run([sys.executable, "-c", GREEDY], input=json.dumps(job), env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    assert theirs["tokens"] == [tok.encode(t).ids for t in texts]
    assert theirs["greedy"] == ours
    assert all(len(set(seq)) > 5 for seq in ours)  # sequences, not one token repeated
