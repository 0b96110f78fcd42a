// Loop-heavy compute guest: table-driven CRC-32 over `len` pseudo-random bytes.
// Stateless (the table is rebuilt per call) so equal calls use equal fuel.
#include <stdint.h>

static uint8_t data[1 << 20];

__attribute__((export_name("crc32"))) uint32_t crc32(uint32_t len, uint32_t seed) {
  if (len > sizeof data) len = sizeof data;
  uint32_t x = seed | 1;
  for (uint32_t i = 0; i < len; i++) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;  // xorshift32
    data[i] = (uint8_t)x;
  }
  uint32_t table[256];
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  uint32_t crc = 0xffffffffu;
  for (uint32_t i = 0; i < len; i++) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}
