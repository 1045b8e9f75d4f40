/* The zigzag varint of Kafka's record format (DefaultRecord's varlong), shared by the C extensions
 * _record_walk.c and _record_columns.c: reads one from p[*pos] up to `end`, advances *pos, and
 * returns 0, or -1 when it runs past `end` or is longer than 10 bytes. */
#ifndef WORKBENCH_VARINT_H
#define WORKBENCH_VARINT_H

#include <Python.h>
#include <stdint.h>

static int varlong(const unsigned char *p, Py_ssize_t end, Py_ssize_t *pos, int64_t *out) {
    uint64_t v = 0;
    int shift = 0;
    while (*pos < end && shift < 70) {
        unsigned char b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1)); /* zigzag */
            return 0;
        }
        shift += 7;
    }
    return -1;
}

#endif
