"""Searches and seed sweeps as Ray Tune trials."""

from __future__ import annotations

import functools
import json
import logging
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fashionzoo.core.errors import FashionZooError, reason
from fashionzoo.registry.lookup import get_entry

if TYPE_CHECKING:
    from fashionzoo.data.loading import Split
    from fashionzoo.registry.entry import ModelEntry
    from fashionzoo.registry.specs import Recipe
    from fashionzoo.training.search import Trial
from fashionzoo.distributed.cluster import connected, remote_reason

TRIAL_RETRIES = 2
"""Times Tune restarts a trial whose worker or node died before giving up on the job."""

log = logging.getLogger(__name__)


def run_trials(
    function: Callable[[Any], Any],
    jobs: list[Any],
    *,
    address: str | None,
    device: str = "auto",
    name: str = "fashionzoo",
) -> list[Any]:
    """``function(job)`` for every job, each a Ray Tune trial on one CPU (one GPU with cuda), as many at once as
    the cluster has room for; results (JSON values) in job order. A trial whose worker dies is restarted."""
    with connected(address) as ray, tempfile.TemporaryDirectory(prefix="fashionzoo-tune-") as storage:
        from ray import tune

        gpu = device == "cuda" and bool(ray.cluster_resources().get("GPU"))
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(_trial, function=function, jobs=jobs), {"cpu": 1, "gpu": 1 if gpu else 0}
            ),
            param_space={"index": tune.grid_search(list(range(len(jobs))))},
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage,
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
            ),
        )
        results: dict[int, Any] = {}
        grid = tuner.fit()
        for result in (grid[index] for index in range(len(grid))):
            metrics, config = result.metrics or {}, result.config or {}
            failure = metrics.get("error")
            if result.error or failure:
                why = failure or remote_reason(result.error) if result.error else failure
                raise FashionZooError(f"trial {config['index'] + 1} of {name} failed: {why}")
            results[config["index"]] = json.loads(metrics["result"])
    return [results[i] for i in range(len(jobs))]


def _trial(config: dict[str, Any], function: Callable[[Any], Any], jobs: list[Any]) -> None:
    """One job, its result reported. An error it raises is reported too, not raised: Tune would retry it
    (:data:`TRIAL_RETRIES` is for workers that die, and a bad data folder or a diverging loss fails every time)."""
    from ray import tune

    try:
        tune.report({"result": json.dumps(function(jobs[config["index"]]))})
    except Exception as error:  # any error of the job itself: one line for the driver
        tune.report(
            {
                "error": str(error)
                if isinstance(error, FashionZooError)
                else f"{type(error).__name__}: {reason(error, first_line=True)}"
            }
        )


def _search_trial(trial: Trial, *, name: str, recipe: Recipe, data: Split, device: str) -> float:
    """One training of a search, on a Tune worker: :func:`fashionzoo.training.search.score_trial`."""
    from fashionzoo.training.fit import distribution_strategy
    from fashionzoo.training.search import score_trial

    return score_trial(get_entry(name), recipe, data, trial, distribution_strategy(device)[0])


def search_on_ray(address: str | None, device: str) -> Callable[..., list[float]]:
    """A :data:`fashionzoo.training.search.ScoreTrials` that runs each training of a search as a Tune trial."""
    from fashionzoo.training.search import trial_line

    def score(entry: ModelEntry, recipe: Recipe, data: Split, trials: list[Trial], label: str) -> list[float]:
        function = functools.partial(_search_trial, name=entry.full_name, recipe=recipe, data=data, device=device)
        scores = run_trials(function, trials, address=address, device=device, name=f"{entry.full_name}-{label}")
        for i, (trial, accuracy) in enumerate(zip(trials, scores, strict=True), 1):
            log.info(trial_line(label, i, len(trials), trial, accuracy))
        return scores

    return score
