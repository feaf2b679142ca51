"""One place that builds the SparkSession, so every job and test starts Spark the same way.

The master comes from the caller, else ``C2V_SPARK_MASTER``, else ``local[*]``: the
environment picks local or cluster, the job code does not change.
"""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[*]"


def resolve_master(master: str | None = None) -> str:
    """The Spark master URL to use: the argument, else ``$C2V_SPARK_MASTER``, else ``local[*]``."""
    return master or os.environ.get("C2V_SPARK_MASTER") or DEFAULT_MASTER


def get_spark(master: str | None = None, app_name: str = "corpus2vec") -> SparkSession:
    """A SparkSession configured for corpus2vec's jobs (returns the active one if it exists).

    Local masters bind to 127.0.0.1 and skip the web UI so tests start quickly and
    never open ports beyond loopback; executors run this interpreter so the worker
    sees the same installed packages as the driver.
    """
    if master is None and not os.environ.get("C2V_SPARK_MASTER") and "PYSPARK_GATEWAY_PORT" in os.environ:
        # Under spark-submit the JVM already holds --master and the cluster's conf;
        # setting a master here would silently override them.
        return SparkSession.builder.appName(app_name).getOrCreate()
    master = resolve_master(master)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
        .config("spark.driver.memory", os.environ.get("C2V_SPARK_DRIVER_MEMORY", "4g"))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.python.worker.reuse", "true")
        .config("spark.sql.adaptive.enabled", "true")
    )
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (
            builder.config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "8")
            .config("spark.default.parallelism", str(_local_cores(master)))
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("C2V_SPARK_LOG_LEVEL", "WARN"))
    return spark


def _local_cores(master: str) -> int:
    """Cores of a ``local[N]``/``local[*]`` master (1 for plain ``local``)."""
    inside = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
    if inside == "*" or not inside.split(",")[0].isdigit():
        return os.cpu_count() or 1
    return int(inside.split(",")[0])
