"""The results database's tables (SQLAlchemy Core): runs, variants, stage results, measurements, provenance.
harness/results/store.py reads and writes them; the device pool's lease table joins the same metadata."""

import sqlalchemy as sa

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("config_path", sa.Text),
    sa.Column("config_json", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # running | done | failed
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("summary_json", sa.Text),
)

variants = sa.Table(
    "variants",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("variant_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("overrides_json", sa.Text, nullable=False),
    sa.Column("config_json", sa.Text, nullable=False),
)

stage_results = sa.Table(
    "stage_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), nullable=False, index=True),
    sa.Column("variant_id", sa.String(64), nullable=False),  # "" for stages shared by all variants
    sa.Column("stage", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # ok | cached | failed | skipped | retried (an attempt run again)
    sa.Column("error_kind", sa.String(32)),  # variant | device | infrastructure
    sa.Column("error", sa.Text),
    sa.Column("cache_key", sa.String(64)),
    sa.Column("node_key", sa.String(64), index=True),  # the graph node: the same work in any run has the same key
    sa.Column("wall_s", sa.Float),
    sa.Column("output_json", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
)

measurements = sa.Table(
    "measurements",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), nullable=False, index=True),
    sa.Column("variant_id", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(32), nullable=False),  # teacher | student | artifact
    sa.Column("device", sa.String(128), nullable=False),
    sa.Column("runtime", sa.String(32), nullable=False),
    sa.Column("target", sa.String(64)),
    sa.Column("accuracy", sa.Float),
    sa.Column("n", sa.Integer),
    sa.Column("size_bytes", sa.Integer),
    sa.Column("p50_ms", sa.Float),
    sa.Column("p90_ms", sa.Float),
    sa.Column("p99_ms", sa.Float),
    sa.Column("peak_rss_bytes", sa.Integer),
    sa.Column("samples_json", sa.Text),  # raw single-inference latencies, ms
    sa.Column("metrics_json", sa.Text),
    sa.Column("verdict", sa.String(16)),  # VALID | INVALID
    sa.Column("verdict_reason", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
)

provenance = sa.Table(
    "provenance",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), nullable=False, index=True),
    sa.Column("variant_id", sa.String(64), nullable=False),  # "" for the run as a whole
    sa.Column("git_sha", sa.String(64)),
    sa.Column("git_dirty", sa.Boolean),
    sa.Column("packages_json", sa.Text),
    sa.Column("host_json", sa.Text),
    sa.Column("data_json", sa.Text),  # file -> sha256
    sa.Column("seeds_json", sa.Text),
    sa.Column("extra_json", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
)
