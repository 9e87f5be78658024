"""is_final against the notebook run as real Spark Structured Streaming (append mode).

The notebook's stream emits a window once the watermark passes it; gold marks exactly those
windows final. Silver is copied to parquet (no delta-spark jars here) in three files, read
one file per micro-batch as the Delta stream read one version per batch.
"""

import os

import pyarrow.parquet as pq

from tests import datasets
from tests.compare import assert_same_windows, keyed
from tests.pipeline import run_all
from tests.reference import notebook_gold


def streamed_notebook_gold(spark, ticks, folder, name):
    folder.mkdir()
    rows = ticks.sort_by("event_time")
    cuts = [i * rows.num_rows // 3 for i in range(4)]
    thirds = [rows.slice(cuts[i], cuts[i + 1] - cuts[i]) for i in range(3)]
    for index, part in enumerate(thirds):
        path = folder / f"part-{index}.parquet"
        pq.write_table(part, path)
        # The file source reads files in modification-time order: make it the time order.
        os.utime(path, (1_700_000_000 + index, 1_700_000_000 + index))
    stream = (
        spark.readStream.schema(spark.createDataFrame(ticks.slice(0, 1)).schema)
        .option("maxFilesPerTrigger", 1)
        .parquet(str(folder))
    )
    query = (
        notebook_gold(stream)
        .writeStream.format("memory")
        .queryName(name)
        .outputMode("append")
        .option("checkpointLocation", str(folder.parent / f"{name}_checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    return spark.sql(f"SELECT * FROM {name}").toPandas()


def test_final_windows_are_what_the_stream_emitted(spark, lake_root, tmp_path):
    ticks = datasets.simulated(symbols=2, interval=120.0, seed=21)
    gold = run_all(lake_root, ticks)
    emitted = streamed_notebook_gold(spark, ticks, tmp_path / "silver_parquet", "streamed_gold")
    final = gold[gold["is_final"]]
    assert 0 < len(final) < len(gold)
    assert_same_windows(final, emitted)
    provisional = keyed(gold[~gold["is_final"]])
    assert provisional.index.intersection(keyed(emitted).index).empty
