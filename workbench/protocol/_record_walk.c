/* The record walk of `workbench.protocol.records.check_records` for uncompressed v2 batches, in C
 * (issue 19): the pure-Python path walks with aiokafka's reader, which makes a Python object and a
 * copy of the key and value per record (0.26-0.31 us per record, more than the broker's whole
 * per-record budget at RF=1); this walk allocates nothing but a header key's UTF-8 check.
 *
 * walk(buffer, start, end, count) walks `count` records from byte `start` to byte `end` of
 * `buffer` (the records of one batch) and returns -1 when they parse and their offset deltas are
 * 0, 1, ..., count - 1; the index of the first record with another offset delta when they all parse
 * (check_records answers INVALID_RECORD); or raises ValueError("record i: why") when they do not
 * parse (CORRUPT_MESSAGE). It refuses what aiokafka's reader refuses:
 *   - a record length, varint or field running past the record or the batch;
 *   - a negative header count or header key length, a header key that is not UTF-8;
 *   - a record whose fields do not fill exactly its length, bytes left after the last record.
 * Negative key/value/header-value lengths mean null, as in Kafka's DefaultRecord.readFrom. The
 * attributes are read as a varint, as aiokafka does (Kafka: one byte of unused bits, always 0 from
 * a client). A varint longer than 10 bytes is refused. check_records runs the pure-Python walk
 * again for any refusal, so the error code and message are always the pure-Python path's. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "_varint.h"

static PyObject *walk(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end, count;
    if (!PyArg_ParseTuple(args, "y*nnn", &view, &start, &end, &count)) return NULL;
    if (start < 0 || end > view.len || start > end || count < 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_IndexError, "walk: start/end outside the buffer or negative count");
        return NULL;
    }
    const unsigned char *p = view.buf;
    Py_ssize_t pos = start, i = 0, bad_delta = -1;
    const char *err = NULL;
    for (; i < count; i++) {
        int64_t len, attrs, ts, delta, klen, vlen, nh, hk, hv;
        if (varlong(p, end, &pos, &len) || len < 0 || len > end - pos) { err = "record length"; break; }
        Py_ssize_t rend = pos + (Py_ssize_t)len;
        if (varlong(p, rend, &pos, &attrs)) { err = "attributes"; break; }
        if (varlong(p, rend, &pos, &ts)) { err = "timestamp delta"; break; }
        if (varlong(p, rend, &pos, &delta)) { err = "offset delta"; break; }
        if (delta != i && bad_delta < 0) bad_delta = i;
        if (varlong(p, rend, &pos, &klen) || (klen > 0 && klen > rend - pos)) { err = "key"; break; }
        if (klen > 0) pos += (Py_ssize_t)klen;
        if (varlong(p, rend, &pos, &vlen) || (vlen > 0 && vlen > rend - pos)) { err = "value"; break; }
        if (vlen > 0) pos += (Py_ssize_t)vlen;
        if (varlong(p, rend, &pos, &nh) || nh < 0) { err = "header count"; break; }
        for (int64_t j = 0; j < nh; j++) {
            if (varlong(p, rend, &pos, &hk) || hk < 0 || hk > rend - pos) { err = "header key"; break; }
            PyObject *key = PyUnicode_DecodeUTF8((const char *)p + pos, (Py_ssize_t)hk, NULL);
            if (key == NULL) { PyErr_Clear(); err = "header key is not UTF-8"; break; }
            Py_DECREF(key);
            pos += (Py_ssize_t)hk;
            if (varlong(p, rend, &pos, &hv) || (hv > 0 && hv > rend - pos)) { err = "header value"; break; }
            if (hv > 0) pos += (Py_ssize_t)hv;
        }
        if (err) break;
        if (pos != rend) { err = "record length disagrees with its fields"; break; }
    }
    if (!err && pos != end) err = "bytes after the last record";
    PyBuffer_Release(&view);
    if (err) {
        PyErr_Format(PyExc_ValueError, "record %zd: %s", i, err);
        return NULL;
    }
    return PyLong_FromSsize_t(bad_delta);
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS,
     "walk(buffer, start, end, count) -> -1, or the first record whose offset delta is not its index; "
     "ValueError when the records do not parse"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_record_walk", "The record walk of check_records for uncompressed v2 batches.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__record_walk(void) { return PyModule_Create(&module); }
