"""CSV downloads, streamed in batches and safe to open in a spreadsheet."""
import csv
import io

BATCH = 500
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value):
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def stream_csv(header, statement, to_record, session):
    """Yield CSV text: the header, then one chunk per batch of the statement's rows.

    `to_record(row)` turns a result row into the row's cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush():
        chunk = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return chunk

    writer.writerow(header)
    yield flush()
    result = session.execute(statement, execution_options={"yield_per": BATCH})
    for batch in result.partitions():
        for row in batch:
            writer.writerow([csv_safe(cell) for cell in to_record(row)])
        yield flush()
