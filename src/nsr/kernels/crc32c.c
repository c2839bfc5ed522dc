/* CRC-32C (Castagnoli), as TensorBoard's event files checksum every record (nsr/kernels/events.py).
   Byte-wise with a table, or the SSE4.2 instruction where the compiler targets it: the same value. */
#include <stddef.h>
#include <stdint.h>
#ifdef __SSE4_2__
#include <nmmintrin.h>
#else
static uint32_t table[256];
static int table_ready = 0;

static void make_table(void) {
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[i] = c;
    }
    table_ready = 1;
}
#endif

/* the masked CRC-32C of n bytes (TFRecord's masking: rotate right by 15, add 0xa282ead8) */
uint32_t nsr_masked_crc32c(const unsigned char* data, int64_t n) {
    uint32_t crc = 0xFFFFFFFFu;
    int64_t i = 0;
#ifdef __SSE4_2__
    uint64_t c64 = crc;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        __builtin_memcpy(&v, data + i, 8);
        c64 = _mm_crc32_u64(c64, v);
    }
    crc = (uint32_t)c64;
    for (; i < n; ++i) crc = _mm_crc32_u8(crc, data[i]);
#else
    if (!table_ready) make_table();
    for (; i < n; ++i) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
#endif
    crc ^= 0xFFFFFFFFu;
    return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}
