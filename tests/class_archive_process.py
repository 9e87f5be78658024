"""A driver class archive written and used, each in a process of its own (each needs a new JVM).

`python -m tests.class_archive_process write PATH` records the classes of a small query into
PATH; `python -m tests.class_archive_process use PATH` starts a session on PATH with the JVM
logging where each class it loads comes from, runs the same query and prints one JSON line: the
query's rows, the JVM's arguments and how many classes came from the archive (a JVM that cannot
use it, another Java's or other jars', loads none from it and starts all the same).
"""

import json
import sys
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from resources.spark import SparkSessionResource, write_class_archive


def counts_by_remainder(spark: SparkSession) -> list[list[int]]:
    rows = spark.range(1000).groupBy((F.col("id") % 3).alias("r")).count().orderBy("r").collect()
    return [[row["r"], row["count"]] for row in rows]


def main(mode: str, path: str) -> None:
    if mode == "write":
        size = write_class_archive(Path(path), counts_by_remainder)
        print(json.dumps({"size": size}), flush=True)
        return
    loads = Path(f"{path}.classes.log")
    resource = SparkSessionResource(
        ui_enabled=False,
        class_archive=path,
        spark_config={"spark.driver.extraJavaOptions": f"-Xlog:class+load:file={loads}"},
    )
    spark = resource.create_session()
    bean = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    report = {
        "rows": counts_by_remainder(spark),
        "arguments": list(bean.getInputArguments()),
        # The dynamic archive is the "top" layer over Java's own (the "base" one).
        "classes_from_archive": loads.read_text().count("source: shared objects file (top)"),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
