#!/usr/bin/env python3
"""Jump polynomials for xoshiro256: J_i(x) = x^(2^(128+i)) mod P(x), i = 0..63.

P is the characteristic polynomial of the xoshiro256 state transition over GF(2). It is found by
Berlekamp-Massey on 512 output bits of one state bit (the polynomial is primitive, so any nonzero
bit sequence has it as its minimal polynomial), and checked: x^(2^128) mod P must equal the jump
polynomial Blackman and Vigna publish. Applying J_i to a state advances it 2^(128+i) steps, so
`Rng(seed, k)` is popcount(k) jumps instead of k.

    python3 tests/reference/make_jump_table.py > include/reparam/random/detail/jump_table.hpp
"""
MASK = (1 << 64) - 1
PUBLISHED_JUMP = [0x180ec6d33cfd0aba, 0xd5a61266f0c9392c, 0xa9582618e03fc9aa, 0x39abdc4529b1661c]


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK


def step(s):
    s0, s1, s2, s3 = s
    t = (s1 << 17) & MASK
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = rotl(s3, 45)
    return [s0, s1, s2, s3]


def berlekamp_massey(bits):
    """Minimal polynomial (as an int, bit k = coefficient of x^k, connection form) of a GF(2) sequence."""
    c, b = 1, 1
    l, m = 0, 1
    for n, s in enumerate(bits):
        d = s
        for i in range(1, l + 1):
            d ^= ((c >> i) & 1) & bits[n - i]
        if d == 0:
            m += 1
        elif 2 * l <= n:
            t = c
            c ^= b << m
            l = n + 1 - l
            b = t
            m = 1
        else:
            c ^= b << m
            m += 1
    return c, l


def polymulmod(a, b, p, deg):
    r = 0
    while b:
        if b & 1:
            r ^= a
        b >>= 1
        a <<= 1
        if (a >> deg) & 1:
            a ^= p
    return r


def main():
    s = [0x0123456789abcdef, 0xfedcba9876543210, 0x0f1e2d3c4b5a6978, 0x8796a5b4c3d2e1f0]
    bits = []
    for _ in range(1024):
        bits.append(s[0] & 1)
        s = step(s)
    c, l = berlekamp_massey(bits)
    assert l == 256, l
    # Connection polynomial C(x) = 1 + c1 x + ... + cL x^L; the characteristic polynomial is its
    # reciprocal x^L C(1/x).
    p = 0
    for i in range(l + 1):
        if (c >> i) & 1:
            p |= 1 << (l - i)
    deg = 256
    # x^(2^128) mod p by 128 squarings of x.
    j = 2
    for _ in range(128):
        j = polymulmod(j, j, p, deg)
    published = sum(w << (64 * k) for k, w in enumerate(PUBLISHED_JUMP))
    assert j == published, "characteristic polynomial does not reproduce the published jump"
    table = []
    for _ in range(64):
        table.append([(j >> (64 * k)) & MASK for k in range(4)])
        j = polymulmod(j, j, p, deg)
    print("#pragma once")
    print("/// \\file jump_table.hpp  x^(2^(128+i)) mod P for xoshiro256, i = 0..63 (P its characteristic")
    print("/// polynomial). Made by tests/reference/make_jump_table.py; do not edit.")
    print()
    print("#include <cstdint>")
    print()
    print("namespace reparam {")
    print("namespace detail {")
    print()
    print("inline constexpr std::uint64_t jump_table[64][4] = {")
    for row in table:
        print("    {" + ", ".join("0x%016xull" % w for w in row) + "},")
    print("};")
    print()
    print("}  // namespace detail")
    print("}  // namespace reparam")


if __name__ == "__main__":
    main()
