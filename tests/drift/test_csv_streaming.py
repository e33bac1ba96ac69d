"""CSV files are streamed block by block; the table equals pyarrow's whole-file read, value for value."""

from __future__ import annotations

import gzip

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from mlops.drift import io as dio
from mlops.drift.io import Source, data_file

BLOCK = 1 << 14  # 16 KiB blocks: the files below span dozens of them
ROWS = 20_000


def _rows(late_row: int, sep: str, decimal: str) -> str:
    """Columns whose later blocks hold values the first block's type guess does not fit."""
    lines = [sep.join(["f", "i", "i2f", "i2s", "null2date", "null2f", "s", "unused"])]
    for r in range(ROWS):
        late = r >= late_row
        lines.append(
            sep.join(
                [
                    f"{r * 0.25 - 7:.4f}".replace(".", decimal),
                    str(r * 3 - 1000),
                    (f"{r}{decimal}5" if late and r % 7 == 0 else str(r)),
                    ("n/a-" + str(r) if late and r % 11 == 0 else f"{r:05d}"),
                    (f"2024-01-{1 + r % 28:02d}" if late else ""),
                    (f"{r}{decimal}25" if late and r % 3 == 0 else ""),
                    ("" if r % 13 == 0 else f"name {r % 37}"),
                    "x" * 20,
                ]
            )
        )
    return "\n".join(lines) + "\n"


def _whole_file(path, dialect, columns, compression=None) -> pa.Table:
    read, parse, convert = dio._csv_options(dialect, columns, {})
    with pa.input_stream(str(path), compression=compression) as stream:
        return pacsv.read_csv(stream, read_options=read, parse_options=parse, convert_options=convert)


@pytest.mark.parametrize("sep,decimal,suffix", [(",", ".", ".csv"), (";", ",", ".csv"), (",", ".", ".csv.gz")])
def test_a_csv_of_many_blocks_reads_as_the_whole_file_reader_reads_it(
    tmp_path, monkeypatch, sep, decimal, suffix
) -> None:
    monkeypatch.setattr(dio, "CSV_BLOCK_BYTES", BLOCK)
    text = _rows(ROWS // 2, sep, decimal).encode()
    assert len(text) > 20 * BLOCK
    path = tmp_path / f"data{suffix}"
    path.write_bytes(gzip.compress(text) if suffix.endswith(".gz") else text)
    wanted = ["s", "i2f", "f", "i", "i2s", "null2date", "null2f"]  # not the file's order; "unused" left out

    source = Source.open([data_file(path)], "reference")
    source.want(wanted)
    source.load()
    part = source._parts[0]
    assert part.dialect.delimiter == sep and part.dialect.decimal_comma == (decimal == ",")
    assert part.table.num_rows == ROWS and part.table.column("f").num_chunks > 10  # streamed: one chunk per block

    expected = _whole_file(path, part.dialect, wanted, "gzip" if suffix.endswith(".gz") else None)
    assert part.table.schema == expected.schema
    assert part.table.equals(expected)
    # the widened columns took the whole-file reader's types, not a fallback to text
    types = {n: part.table.schema.field(n).type for n in wanted}
    assert types["i2f"] == pa.float64() and types["null2f"] == pa.float64()
    assert types["null2date"] == pa.date32() and pa.types.is_string(types["i2s"]) and types["i"] == pa.int64()
    assert part.table.column("i2s")[1].as_py() == "00001"  # text read again as text, leading zeros kept
    for name in wanted:
        assert source.column(name).to_pylist() == expected.column(name).to_pylist()


def test_latin1_in_a_later_block_of_a_number_column_rereads_the_file_as_latin1(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(dio, "CSV_BLOCK_BYTES", BLOCK)
    lines = ["a,b"] + [f"{r},{r % 5}" for r in range(ROWS)] + ["caf\xe9,1"]
    path = tmp_path / "late.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    source = Source.open([data_file(path)], "current")
    source.want(["a", "b"])
    column = source.column("a")
    assert source._parts[0].dialect.encoding == "latin1"
    assert pa.types.is_string(column.type) and column[-1].as_py() == "café" and column[0].as_py() == "0"
    assert source.column("b").type == pa.int64()
