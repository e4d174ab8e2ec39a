"""Track tables on disk: CSV or parquet, chosen by the file suffix, written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from celltrack.io.atomic import atomic_output_file

TABLE_SUFFIXES = (".csv", ".parquet")


def write_table(table: pd.DataFrame, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``table`` as CSV (``.csv``) or parquet (``.parquet``) atomically."""
    path = Path(path)
    if path.suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: unknown table format; use a .csv or .parquet file name")
    with atomic_output_file(path, overwrite) as tmp:
        if path.suffix == ".csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, index=False)
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or parquet table written by :func:`write_table`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: table not found")
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    raise ValueError(f"{path}: unknown table format; use a .csv or .parquet file name")
