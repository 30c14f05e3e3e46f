"""AWS-only assets: the Glue catalog over the processed zone, and a transform run inside Lambda (Pipes).

Defined only when ``ECOMMERCE_ENV=aws``; in local mode this module defines nothing.
"""

import dagster as dg

from ecommerce_assets.settings import get_settings
from ecommerce_assets.storage import zones
from ecommerce_assets.storage.glue_table_catalog import GlueCatalog, parquet_table_roots
from ecommerce_assets.storage.lake import Lake

GROUP = "aws"
_settings = get_settings()

if _settings.env == "aws":

    @dg.asset(
        key=["aws", "glue_processed_tables"],
        group_name=GROUP,
        kinds={"glue", "s3", "parquet"},
        retry_policy=dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL),
        automation_condition=dg.AutomationCondition.on_cron("*/30 * * * *"),
        description=(
            "Every Parquet table in the lake's `processed/` zone registered in the Glue catalog (database "
            "`ECOMMERCE_GLUE_DATABASE`), with its `key=value` partitions, so Athena and Redshift Spectrum can "
            "query it. Idempotent: tables are created or updated, only new partitions are added."
        ),
    )
    def glue_processed_tables(
        context: dg.AssetExecutionContext, lake: dg.ResourceParam[Lake], table_catalog: dg.ResourceParam[GlueCatalog]
    ) -> dg.MaterializeResult:
        registered = []
        for name, prefix in parquet_table_roots(lake).items():
            r = table_catalog.register_lake_prefix(lake, prefix, table_catalog.default_database, name)
            context.log.info(f"{r.database}.{r.table}: {r.action}, +{r.partitions_added} partition(s) at {r.location}")
            registered.append({"table": f"{r.database}.{r.table}", "action": r.action, "location": r.location,
                               "partitions_added": r.partitions_added, "partitions": r.partitions_total})
        return dg.MaterializeResult(metadata={
            "tables": len(registered),
            "partitions_added": sum(r["partitions_added"] for r in registered),
            "registrations": dg.MetadataValue.json(registered),
            "dagster/uri": dg.MetadataValue.path(lake.uri(zones.PROCESSED)),
        })

    if _settings.transform_lambda:
        from dagster_aws.pipes import PipesLambdaClient  # aws mode only: local mode never imports dagster-aws

        from ecommerce_assets.defs.transactions.assets import daily

        @dg.asset(
            key=["aws", "lambda_transform"],
            group_name=GROUP,
            kinds={"lambda"},
            partitions_def=daily,
            retry_policy=dg.RetryPolicy(max_retries=2, delay=30),
            description=(
                "The transactions of one date turned into Parquet inside the AWS Lambda function "
                "`ECOMMERCE_TRANSFORM_LAMBDA` (`lambdas/pipes_transform.py`) through Dagster Pipes "
                "(`PipesLambdaClient`): the function gets the date in its event, runs the same transform as "
                "the `transactions` asset on the S3 lake and reports its materialization (record counts, "
                "output URI) back here."
            ),
        )
        def lambda_transform(
            context: dg.AssetExecutionContext, pipes_lambda_client: PipesLambdaClient
        ) -> dg.MaterializeResult:
            event = {"date": context.partition_key}
            return pipes_lambda_client.run(
                context=context, function_name=_settings.transform_lambda, event=event
            ).get_materialize_result()
