"""Prediction records as a run writes them: one builder for the three kinds a run
produces (generated, failed, copied), each a `PredictionRecord` with every column
of schemas/prediction.schema.json."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from batch.cache.schema import PredictionRecord

if TYPE_CHECKING:  # the engine module is only needed once rows are generated
    from batch.run.executors.base import Completion
    from batch.run.plan import Failure, Plan, Request


def is_chat(prompt: str | list[dict[str, Any]] | None) -> bool | None:
    """The `chat` column: whether the request was chat messages (None: no request)."""
    return None if prompt is None else isinstance(prompt, list)


def prompt_text(prompt: str | list[dict[str, Any]] | None) -> str | None:
    """The `prompt` column: the text, or chat messages as JSON."""
    if prompt is None or isinstance(prompt, str):
        return prompt
    return json.dumps(prompt, ensure_ascii=False)


class RecordBuilder:
    """Records of one run of one job by one candidate (a model, and maybe an adapter)."""

    def __init__(self, job: str, run_id: str, *, candidate: str, model: str,
                 revision: str | None, adapter: str | None = None,
                 adapter_revision: str | None = None) -> None:
        self.job, self.run_id, self.candidate = job, run_id, candidate
        self.model, self.revision = model, revision
        self.adapter, self.adapter_revision = adapter, adapter_revision

    @classmethod
    def of(cls, plan: Plan, run_id: str) -> RecordBuilder:
        """Records of a plan's candidate."""
        return cls(plan.job, run_id, candidate=plan.candidate, model=plan.model,
                   revision=plan.revision, adapter=plan.adapter,
                   adapter_revision=plan.adapter_revision)

    def _record(self, input_id: str, key: str, *, prompt: str | None = None,
                params: str | None = None, prompt_tokens: int | None = None,
                error: str | None = None, chat: bool | None = None) -> PredictionRecord:
        return PredictionRecord(
            key=key, job=self.job, input_id=input_id, model=self.model,
            revision=self.revision, adapter=self.adapter, candidate=self.candidate,
            adapter_revision=self.adapter_revision, prompt=prompt, output=None,
            finish_reason=None, prompt_tokens=prompt_tokens, output_tokens=None,
            run_id=self.run_id, created_at=datetime.now(UTC), error=error,
            outputs=None, logprobs=None, params=params, chat=chat,
        )

    def generated(self, request: Request, input_id: str,
                  completion: Completion) -> PredictionRecord:
        """What the engine answered for a request, or why it refused it."""
        record = self._record(input_id, request.key, prompt=prompt_text(request.prompt),
                              params=request.sampling.params_json,
                              prompt_tokens=completion.prompt_tokens, error=completion.error,
                              chat=is_chat(request.prompt))
        if completion.error is None:
            record["output"] = completion.texts[0] if completion.texts else ""
            record["outputs"] = completion.texts if len(completion.texts) > 1 else None
            record["finish_reason"] = completion.finish_reason
            record["output_tokens"] = completion.output_tokens
            if completion.logprobs is not None:
                record["logprobs"] = json.dumps(completion.logprobs)
        return record

    def failed(self, failure: Failure, prompt_tokens: int | None = None) -> PredictionRecord:
        """A row that never became a request, or one the context cannot fit."""
        return self._record(
            failure.input_id, failure.key, prompt=prompt_text(failure.prompt),
            params=failure.sampling.params_json if failure.sampling else None,
            prompt_tokens=prompt_tokens, error=failure.error, chat=is_chat(failure.prompt),
        )

    def copied(self, source: PredictionRecord, input_id: str) -> PredictionRecord:
        """Another record of the same key: same weights, same answer; the catalog name,
        candidate, input id and run are this job's."""
        record = source.copy()
        record.update(job=self.job, input_id=input_id, model=self.model, run_id=self.run_id,
                      candidate=self.candidate, adapter=self.adapter,
                      adapter_revision=self.adapter_revision, created_at=datetime.now(UTC))
        return record
