"""The transaction generator on a schedule (every ``ECOMMERCE_GENERATOR_INTERVAL_MINUTES``, default 5).

Off by default; ``ECOMMERCE_GENERATOR_RUNNING=1`` (the demo) starts it with the code location.
"""


import time

import dagster as dg

from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage.lake import Lake

_settings = get_settings()


class GeneratorConfig(dg.Config):
    """How many transactions one tick lands, and how."""

    count: int = 5
    per_file: int = 1
    format: str = "object"
    seed: int | None = None  # default: the tick's epoch, so every tick differs


@dg.op(description="Land generated transactions in landing/transactions/date=<today>/ (the shop's stand-in).")
def generate_transactions(context: dg.OpExecutionContext, config: GeneratorConfig, lake: dg.ResourceParam[Lake]) -> None:
    # the generator builds rows with NumPy and Arrow: imported by the run, not by loading the definitions
    from ecommerce_assets.services.transactions_generator import FORMATS, generate_files, land

    if config.format not in FORMATS:
        raise dg.Failure(f"format must be one of {', '.join(FORMATS)}; got {config.format!r}")
    per_file = 1 if config.format == "object" else config.per_file
    seed = config.seed if config.seed is not None else int(time.time())
    files, records, keys = land(lake, generate_files(config.count, per_file=per_file, fmt=config.format, seed=seed))
    context.log.info(f"landed {records} transaction(s) in {files} file(s): {', '.join(keys[:5])}")


@dg.job(description="Land a few generated transactions (what a shop would drop every few minutes).")
def transactions_generator_job() -> None:
    generate_transactions()


transactions_generator_schedule = dg.ScheduleDefinition(
    name="transactions_generator_schedule",
    job=transactions_generator_job,
    cron_schedule=f"*/{_settings.generator_interval_minutes} * * * *",
    default_status=(
        dg.DefaultScheduleStatus.RUNNING if _settings.generator_running else dg.DefaultScheduleStatus.STOPPED
    ),
    description=f"Every {_settings.generator_interval_minutes} minute(s): land generated transactions.",
)
