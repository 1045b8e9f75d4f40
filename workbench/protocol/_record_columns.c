/* Record batches to Arrow column buffers, in C (issue 19): the Parquet converter's decode.
 *
 * The pure-Python path (`records.iter_record_chunks` + `parquet_tier.columns_to_table`) makes a
 * Python record object per record with aiokafka's reader, then a Python list per column, then an
 * Arrow array from each list: about 1-1.5 us per record, twice the cost of writing the Parquet file
 * and most of the lakehouse writer's CPU. This module reads the same bytes straight into the
 * buffers of Arrow arrays (`pyarrow.Array.from_buffers` wraps them without a copy).
 *
 * columns(batches) takes a list of whole, uncompressed v2 data batches (61-byte header, then the
 * records; the caller decompresses and skips control batches) and returns a tuple of
 *   rows, offset, timestamp, key validity, key offsets, key data, value validity, value offsets,
 *   value data, header list offsets, header count, header key offsets, header key data,
 *   header value validity, header value offsets, header value data, producer_id, producer_epoch,
 *   sequence, batch_base_offset, partition_leader_epoch, timestamp_type
 * as bytes in Arrow's layout (little-endian fixed-width values, int32 offsets, LSB-first validity
 * bitmaps, 1 = valid), one row per record in batch order. Fields are derived as aiokafka's reader
 * derives them: offset = base offset + offset delta; timestamp = first timestamp + delta, or the
 * batch's max timestamp under LogAppendTime; sequence = base sequence + offset delta, wrapping past
 * 2^31 - 1 as Kafka's DefaultRecordBatch.incrementSequence does (-1 without a base sequence); a
 * negative key, value or header value length is null.
 *
 * It refuses (ValueError) everything the record walk (`_record_walk.c`) refuses, and also a record
 * count below 0, an offset, timestamp or sequence the arithmetic above would overflow, and columns
 * past 2 GiB (int32 offsets). The caller decodes any refused input again on the pure-Python path,
 * so the error, or the rows, are always that path's: this module can only be faster, not different.
 * Two passes over the records: the first checks everything and sizes the buffers, the second fills
 * them, so nothing is reallocated and a refusal allocates nothing. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define HEADER_SIZE 61

#include "_varint.h"

static int64_t be64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return (int64_t)v;
}
static int32_t be32(const unsigned char *p) {
    return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
}
static int16_t be16(const unsigned char *p) { return (int16_t)(((uint16_t)p[0] << 8) | p[1]); }

typedef struct {
    int64_t base_offset, first_ts, max_ts, producer_id;
    int32_t ple, base_sequence, count;
    int16_t epoch;
    int8_t ts_type;
} Batch;

static int read_batch_header(const unsigned char *p, Py_ssize_t len, Batch *b) {
    if (len < HEADER_SIZE || p[16] != 2) return -1;
    b->base_offset = be64(p);
    b->ple = be32(p + 12);
    int16_t attrs = be16(p + 21);
    b->ts_type = (attrs >> 3) & 1;
    b->first_ts = be64(p + 27);
    b->max_ts = be64(p + 35);
    b->producer_id = be64(p + 43);
    b->epoch = be16(p + 51);
    b->base_sequence = be32(p + 53);
    b->count = be32(p + 57);
    return b->count < 0 ? -1 : 0;
}

/* A nullable bytes field (key, value, header value) in the first pass: its varint length, then
 * that many bytes within `end` (a negative length is null and has none); adds them to *total. */
static int skip_nullable(const unsigned char *p, Py_ssize_t end, Py_ssize_t *pos, int64_t *total) {
    int64_t len;
    if (varlong(p, end, pos, &len) || (len > 0 && len > end - *pos)) return -1;
    if (len > 0) {
        *pos += (Py_ssize_t)len;
        *total += len;
    }
    return 0;
}

/* The same field in the second pass, checked already: its validity bit for row `i`, its bytes
 * appended to `data` at `off`; returns the new end offset. */
static int32_t put_nullable(const unsigned char *p, Py_ssize_t end, Py_ssize_t *pos, char *valid, char *data, int64_t i,
                            int32_t off) {
    int64_t len = 0;
    varlong(p, end, pos, &len);
    if (len >= 0) {
        ((unsigned char *)valid)[i >> 3] |= (unsigned char)(1u << (i & 7));
        if (len > 0) {
            memcpy(data + off, p + *pos, (size_t)len);
            off += (int32_t)len;
            *pos += (Py_ssize_t)len;
        }
    }
    return off;
}

/* Totals of the first pass. */
typedef struct {
    int64_t rows, key_bytes, value_bytes, headers, hkey_bytes, hvalue_bytes;
} Sizes;

/* The first pass over one batch's records: every check, and the sizes. */
static const char *check_batch(const unsigned char *p, Py_ssize_t end, const Batch *b, Sizes *s) {
    Py_ssize_t pos = HEADER_SIZE;
    for (int32_t i = 0; i < b->count; i++) {
        int64_t len, attrs, ts, delta, nh, hk;
        if (varlong(p, end, &pos, &len) || len < 0 || len > end - pos) return "record length";
        Py_ssize_t rend = pos + (Py_ssize_t)len;
        if (varlong(p, rend, &pos, &attrs)) return "attributes";
        if (varlong(p, rend, &pos, &ts)) return "timestamp delta";
        if (b->ts_type == 0 && ((ts > 0 && b->first_ts > INT64_MAX - ts) || (ts < 0 && b->first_ts < INT64_MIN - ts)))
            return "timestamp overflows";
        if (varlong(p, rend, &pos, &delta)) return "offset delta";
        if (delta < 0 || delta > INT32_MAX || b->base_offset > INT64_MAX - delta) return "offset delta out of range";
        if (skip_nullable(p, rend, &pos, &s->key_bytes)) return "key";
        if (skip_nullable(p, rend, &pos, &s->value_bytes)) return "value";
        if (varlong(p, rend, &pos, &nh) || nh < 0) return "header count";
        for (int64_t j = 0; j < nh; j++) {
            if (varlong(p, rend, &pos, &hk) || hk < 0 || hk > rend - pos) return "header key";
            PyObject *key = PyUnicode_DecodeUTF8((const char *)p + pos, (Py_ssize_t)hk, NULL);
            if (key == NULL) { PyErr_Clear(); return "header key is not UTF-8"; }
            Py_DECREF(key);
            pos += (Py_ssize_t)hk;
            s->hkey_bytes += hk;
            if (skip_nullable(p, rend, &pos, &s->hvalue_bytes)) return "header value";
        }
        s->headers += nh;
        if (pos != rend) return "record length disagrees with its fields";
    }
    if (pos != end) return "bytes after the last record";
    s->rows += b->count;
    return NULL;
}

static PyObject *new_bytes(int64_t size) { return PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size); }

#define PUT(buf, type, i, v) (((type *)(buf))[(i)] = (type)(v))

static int32_t next_sequence(int32_t base, int64_t delta) {
    if (base < 0) return -1;
    if ((int64_t)base > (int64_t)INT32_MAX - delta) return (int32_t)(delta - ((int64_t)INT32_MAX - base) - 1);
    return (int32_t)(base + delta);
}

enum {
    C_OFFSET, C_TS, C_KVALID, C_KOFF, C_KDATA, C_VVALID, C_VOFF, C_VDATA, C_HOFF, C_HKOFF, C_HKDATA,
    C_HVVALID, C_HVOFF, C_HVDATA, C_PID, C_EPOCH, C_SEQ, C_BBO, C_PLE, C_TST, C_COUNT
};

static PyObject *columns(PyObject *Py_UNUSED(self), PyObject *arg) {
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "columns: a list of batches");
        return NULL;
    }
    Py_ssize_t nb = PyList_GET_SIZE(arg);
    Py_buffer *views = PyMem_Calloc(nb ? nb : 1, sizeof(Py_buffer));
    Batch *batches = PyMem_Calloc(nb ? nb : 1, sizeof(Batch));
    PyObject *out[C_COUNT] = {NULL};
    PyObject *result = NULL;
    Py_ssize_t got = 0;
    if (views == NULL || batches == NULL) { PyErr_NoMemory(); goto done; }
    Sizes s = {0};
    for (; got < nb; got++) {
        if (PyObject_GetBuffer(PyList_GET_ITEM(arg, got), &views[got], PyBUF_SIMPLE) < 0) goto done;
        const unsigned char *p = views[got].buf;
        if (read_batch_header(p, views[got].len, &batches[got])) {
            PyErr_Format(PyExc_ValueError, "batch %zd: not a v2 batch header", got);
            got++;
            goto done;
        }
        const char *err = check_batch(p, views[got].len, &batches[got], &s);
        if (err) {
            PyErr_Format(PyExc_ValueError, "batch %zd: %s", got, err);
            got++;
            goto done;
        }
    }
    if (s.key_bytes > INT32_MAX || s.value_bytes > INT32_MAX || s.hkey_bytes > INT32_MAX ||
        s.hvalue_bytes > INT32_MAX || s.headers > INT32_MAX || s.rows > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "columns past 2 GiB");
        goto done;
    }
    int64_t n = s.rows, bitmap = (n + 7) / 8, hbitmap = (s.headers + 7) / 8;
    int64_t sizes[C_COUNT] = {
        [C_OFFSET] = 8 * n, [C_TS] = 8 * n, [C_KVALID] = bitmap, [C_KOFF] = 4 * (n + 1), [C_KDATA] = s.key_bytes,
        [C_VVALID] = bitmap, [C_VOFF] = 4 * (n + 1), [C_VDATA] = s.value_bytes, [C_HOFF] = 4 * (n + 1),
        [C_HKOFF] = 4 * (s.headers + 1), [C_HKDATA] = s.hkey_bytes, [C_HVVALID] = hbitmap,
        [C_HVOFF] = 4 * (s.headers + 1), [C_HVDATA] = s.hvalue_bytes, [C_PID] = 8 * n, [C_EPOCH] = 2 * n,
        [C_SEQ] = 4 * n, [C_BBO] = 8 * n, [C_PLE] = 4 * n, [C_TST] = n,
    };
    char *buf[C_COUNT];
    for (int c = 0; c < C_COUNT; c++) {
        if ((out[c] = new_bytes(sizes[c])) == NULL) goto done;
        buf[c] = PyBytes_AS_STRING(out[c]);
    }
    memset(buf[C_KVALID], 0, (size_t)bitmap);
    memset(buf[C_VVALID], 0, (size_t)bitmap);
    memset(buf[C_HVVALID], 0, (size_t)hbitmap);
    int32_t koff = 0, voff = 0, hcount = 0, hkoff = 0, hvoff = 0;
    PUT(buf[C_KOFF], int32_t, 0, 0);
    PUT(buf[C_VOFF], int32_t, 0, 0);
    PUT(buf[C_HOFF], int32_t, 0, 0);
    PUT(buf[C_HKOFF], int32_t, 0, 0);
    PUT(buf[C_HVOFF], int32_t, 0, 0);
    int64_t row = 0;
    /* The second pass: everything was checked, so only the arithmetic remains. */
    for (Py_ssize_t k = 0; k < nb; k++) {
        const unsigned char *p = views[k].buf;
        const Batch *b = &batches[k];
        Py_ssize_t pos = HEADER_SIZE, end = views[k].len;
        for (int32_t i = 0; i < b->count; i++, row++) {
            int64_t len = 0, attrs = 0, ts = 0, delta = 0, nh = 0, hk = 0;
            varlong(p, end, &pos, &len);
            varlong(p, end, &pos, &attrs);
            varlong(p, end, &pos, &ts);
            varlong(p, end, &pos, &delta);
            PUT(buf[C_OFFSET], int64_t, row, b->base_offset + delta);
            PUT(buf[C_TS], int64_t, row, b->ts_type ? b->max_ts : b->first_ts + ts);
            koff = put_nullable(p, end, &pos, buf[C_KVALID], buf[C_KDATA], row, koff);
            PUT(buf[C_KOFF], int32_t, row + 1, koff);
            voff = put_nullable(p, end, &pos, buf[C_VVALID], buf[C_VDATA], row, voff);
            PUT(buf[C_VOFF], int32_t, row + 1, voff);
            varlong(p, end, &pos, &nh);
            for (int64_t j = 0; j < nh; j++, hcount++) {
                varlong(p, end, &pos, &hk);
                memcpy(buf[C_HKDATA] + hkoff, p + pos, (size_t)hk);
                hkoff += (int32_t)hk;
                pos += (Py_ssize_t)hk;
                PUT(buf[C_HKOFF], int32_t, hcount + 1, hkoff);
                hvoff = put_nullable(p, end, &pos, buf[C_HVVALID], buf[C_HVDATA], hcount, hvoff);
                PUT(buf[C_HVOFF], int32_t, hcount + 1, hvoff);
            }
            PUT(buf[C_HOFF], int32_t, row + 1, hcount);
            PUT(buf[C_PID], int64_t, row, b->producer_id);
            PUT(buf[C_EPOCH], int16_t, row, b->epoch);
            PUT(buf[C_SEQ], int32_t, row, next_sequence(b->base_sequence, delta));
            PUT(buf[C_BBO], int64_t, row, b->base_offset);
            PUT(buf[C_PLE], int32_t, row, b->ple);
            PUT(buf[C_TST], int8_t, row, b->ts_type);
        }
    }
    result = Py_BuildValue(
        "(nOOOOOOOOOnOOOOOOOOOOO)", (Py_ssize_t)n, out[C_OFFSET], out[C_TS], out[C_KVALID], out[C_KOFF],
        out[C_KDATA], out[C_VVALID], out[C_VOFF], out[C_VDATA], out[C_HOFF], (Py_ssize_t)s.headers,
        out[C_HKOFF], out[C_HKDATA], out[C_HVVALID], out[C_HVOFF], out[C_HVDATA], out[C_PID], out[C_EPOCH],
        out[C_SEQ], out[C_BBO], out[C_PLE], out[C_TST]);
done:
    for (Py_ssize_t k = 0; k < got; k++)
        if (views[k].obj != NULL) PyBuffer_Release(&views[k]);
    for (int c = 0; c < C_COUNT; c++) Py_XDECREF(out[c]);
    PyMem_Free(views);
    PyMem_Free(batches);
    return result;
}

static PyMethodDef methods[] = {
    {"columns", columns, METH_O, "Uncompressed v2 data batches -> Arrow column buffers (see the module source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_record_columns", NULL, -1, methods};

PyMODINIT_FUNC PyInit__record_columns(void) { return PyModule_Create(&module); }
