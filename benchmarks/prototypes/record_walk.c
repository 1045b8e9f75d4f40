/* Prototype (issue 19): walk the records of one uncompressed v2 batch without allocating, refusing
 * what workbench.protocol.records.check_records refuses (it walks with aiokafka's reader):
 *   - a record length, varint or field running past the record or the batch;
 *   - offset deltas other than 0, 1, ..., count - 1 in order;
 *   - a negative header count or header key length, a header key that is not UTF-8;
 *   - a record whose fields do not fill exactly its length, bytes left after the last record.
 * Negative key/value/header-value lengths mean null, as in Kafka's DefaultRecord.readFrom. The
 * attributes are read as a varint, as aiokafka does (Kafka: one byte of unused bits, always 0 from
 * a client), so that exactly the same batches are refused.
 * walk(buffer, start, count) -> None, or ValueError("record i: why"). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static int varlong(const unsigned char *p, Py_ssize_t end, Py_ssize_t *pos, int64_t *out) {
    uint64_t v = 0; int shift = 0;
    while (*pos < end && shift < 70) {
        unsigned char b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) { *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1)); return 0; }
        shift += 7;
    }
    return -1;
}

static PyObject *walk(PyObject *self, PyObject *args) {
    Py_buffer view; Py_ssize_t start, count;
    if (!PyArg_ParseTuple(args, "y*nn", &view, &start, &count)) return NULL;
    const unsigned char *p = view.buf; Py_ssize_t end = view.len, pos = start;
    const char *err = NULL; Py_ssize_t i = 0;
    for (; i < count; i++) {
        int64_t len, ts, delta, klen, vlen, nh, hk, hv;
        if (varlong(p, end, &pos, &len) || len < 0 || len > end - pos) { err = "record length"; break; }
        Py_ssize_t rend = pos + (Py_ssize_t)len;
        if (pos >= rend) { err = "record too short"; break; }
        int64_t attrs;
        if (varlong(p, rend, &pos, &attrs)) { err = "attributes"; break; }
        if (varlong(p, rend, &pos, &ts)) { err = "timestamp delta"; break; }
        if (varlong(p, rend, &pos, &delta)) { err = "offset delta"; break; }
        if (delta != i) { err = "offset delta out of order"; break; }
        if (varlong(p, rend, &pos, &klen) || (klen > 0 && klen > rend - pos)) { err = "key"; break; }
        if (klen > 0) pos += klen;
        if (varlong(p, rend, &pos, &vlen) || (vlen > 0 && vlen > rend - pos)) { err = "value"; break; }
        if (vlen > 0) pos += vlen;
        if (varlong(p, rend, &pos, &nh) || nh < 0) { err = "header count"; break; }
        for (int64_t j = 0; j < nh && !err; j++) {
            if (varlong(p, rend, &pos, &hk) || hk < 0 || hk > rend - pos) { err = "header key"; break; }
            PyObject *key = PyUnicode_DecodeUTF8((const char *)p + pos, (Py_ssize_t)hk, NULL);
            if (key == NULL) { PyErr_Clear(); err = "header key is not UTF-8"; break; }
            Py_DECREF(key);
            pos += hk;
            if (varlong(p, rend, &pos, &hv) || (hv > 0 && hv > rend - pos)) { err = "header value"; break; }
            if (hv > 0) pos += hv;
        }
        if (err) break;
        if (pos != rend) { err = "record length disagrees with its fields"; break; }
    }
    if (!err && pos != end) err = "bytes after the last record";
    PyBuffer_Release(&view);
    if (err) { PyErr_Format(PyExc_ValueError, "record %zd: %s", i, err); return NULL; }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {{"walk", walk, METH_VARARGS, "walk(buffer, start, count)"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_record_walk", NULL, -1, methods};
PyMODINIT_FUNC PyInit__record_walk(void) { return PyModule_Create(&mod); }
