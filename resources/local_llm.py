"""The heavy tier without a server: a local transformers model folder run in process
(`heavy: {kind: transformers, path: DIR}`), answering the same prompt as a served model.

- A causal language model (any `...ForCausalLM`) is given the chat (through the tokenizer's
  chat template where it has one, else as `role: content` lines) and each label is scored as
  the answer's continuation: the label's probability is the softmax, over the labels, of the
  summed log-probabilities of its tokens. Its answer is always exactly one of the labels.
- A zero-shot NLI classifier (a `...ForSequenceClassification` whose labels include
  `entailment`) takes the record's text as premise and `heavy.nli_template` filled with each
  label as hypothesis; the labels' entailment logits, softmaxed, are the probabilities.

Nothing is downloaded: the folder must hold the weights and tokenizer."""

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from annotation_assets.core.encoder import encoder_identity
from annotation_assets.core.llm import ANSWERED, Answer
from annotation_assets.core.spec import HeavySettings


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max()
    e = np.exp(z)
    out: np.ndarray = e / e.sum()
    return out


class LocalLabeler:
    """A local model folder as the heavy tier's labeler (thread-safe: one forward at a time)."""

    def __init__(self, settings: HeavySettings, labels: list[str], path: Path) -> None:
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )

        self.settings, self.labels, self.path = settings, list(labels), path
        self._torch = torch
        self._lock = threading.Lock()
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        label2id = {str(k).lower(): int(v) for k, v in (config.label2id or {}).items()}
        archs = " ".join(config.architectures or [])
        if "ForSequenceClassification" in archs and "entailment" in label2id:
            self.kind = "nli"
            self.entailment = label2id["entailment"]
            self.model = AutoModelForSequenceClassification.from_pretrained(
                path, local_files_only=True
            )
        else:
            self.kind = "causal"
            self.model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        self.model.eval()
        self.max_positions = int(
            getattr(config, "max_position_embeddings", None)
            or getattr(config, "n_positions", None)
            or 512
        )
        self._version = f"transformers:{encoder_identity(path)}"

    @property
    def version(self) -> str:
        return self._version

    def answer_settings(self) -> dict[str, Any]:
        return {"labels": self.labels, "nli_template": self.settings.nli_template}

    def ask(self, messages: list[dict[str, str]]) -> Answer:
        start = time.perf_counter()
        with self._lock, self._torch.inference_mode():
            if self.kind == "nli":
                scores, tokens_in = self._nli(messages[-1]["content"])
            else:
                scores, tokens_in = self._causal(messages)
        probs = _softmax(np.asarray(scores, dtype=np.float64))
        best = int(probs.argmax())
        return Answer(
            self.labels[best],
            float(probs[best]),
            ANSWERED,
            tokens_in=tokens_in,
            latency_s=time.perf_counter() - start,
        )

    def _prompt(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            return str(text)
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join(lines) + "\nassistant:"

    def _causal(self, messages: list[dict[str, str]]) -> tuple[list[float], int]:
        torch = self._torch
        prompt = self.tokenizer(self._prompt(messages), add_special_tokens=False)["input_ids"]
        answers = [
            self.tokenizer(" " + label, add_special_tokens=False)["input_ids"]
            for label in self.labels
        ]
        longest = max(len(a) for a in answers)
        keep = max(1, self.max_positions - longest)
        prompt = prompt[-keep:]  # the record's text is last: cut from the front
        rows = [prompt + a for a in answers]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        logprobs = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits, -1)
        scores = []
        for i, answer in enumerate(answers):
            at = len(prompt)
            total = sum(float(logprobs[i, at + j - 1, token]) for j, token in enumerate(answer))
            scores.append(total)
        return scores, len(prompt)

    def _nli(self, text: str) -> tuple[list[float], int]:
        hypotheses = [self.settings.nli_template.format(label=label) for label in self.labels]
        batch = self.tokenizer(
            [text] * len(self.labels),
            hypotheses,
            truncation="only_first",
            max_length=min(self.max_positions, 512),
            padding=True,
            return_tensors="pt",
        )
        logits = self.model(**batch).logits
        scores = [float(v) for v in logits[:, self.entailment]]
        return scores, int(batch["attention_mask"].sum())
