// Attention kernels of the BHViT dataflow (MSMHA): the integer LayerNorm of the
// attention tokens and QD attention on binary Q, K, V.  Golden semantics:
// hw/kernels/attention.py (layernorm_int, qd_attention).
#pragma once
#include <ap_int.h>
#include <hls_stream.h>
#include <stdint.h>

#include "bhvit_binary.hpp"
#include "bhvit_fixed.hpp"

namespace bhvit {

// Bits of an unsigned value up to n (ceil(log2(n + 1))): widths from bounds.
constexpr unsigned bits_for(unsigned long long n) { return n == 0 ? 0 : 1 + bits_for(n >> 1); }

// floor(sqrt(v)), exact, one result bit per step from the top (the restoring
// digit-by-digit method): rem keeps v - res^2, and setting bit i of res costs
// (res + 2^i)^2 - res^2 = res * 2^(i+1) + 2^(2i).  A fixed count of (VB+1)/2
// compare-subtract steps, unrolled into a chain of adders.
template <unsigned VB>
ap_uint<(VB + 1) / 2> isqrt(ap_uint<VB> v) {
#pragma HLS INLINE
    constexpr unsigned NB = (VB + 1) / 2;
    ap_uint<2 * NB + 1> rem = v;
    ap_uint<NB> res = 0;
    for (int i = NB - 1; i >= 0; i--) {
#pragma HLS UNROLL
        const ap_uint<2 * NB + 1> trial = (ap_uint<2 * NB + 1>(res) << (i + 1)) + (ap_uint<2 * NB + 1>(1) << (2 * i));
        if (rem >= trial) {
            rem -= trial;
            res[i] = 1;
        }
    }
    return res;
}

// Integer LayerNorm of each row of C signed (SIGNED) or unsigned IB-bit values (PE per word):
//   D = C x - sum x,  V = sum D^2,  inv = floor(2^R / max(isqrt(V + EPS), 1)),
//   y = requant_OB((D * inv * gmul[c] + bias[c]) >> SHIFT).
// One pass reads the row into a buffer while summing x and x^2, since
// V = sum (C x - S)^2 = C (C sum x^2 - S^2) exactly; one isqrt and one
// division per row; a second pass normalises the buffered row.
// |D| <= isqrt(V) (D^2 is one term of V), so |D * inv| <= 2^R: the product
// fits R + 2 signed bits whatever the row.  ACC: the generator's bound on
// 2^R * max|gmul| + max|bias|.
template <unsigned C, unsigned PE, unsigned IB, bool SIGNED, unsigned OB, unsigned R, int SHIFT,
          unsigned long long EPS, unsigned ACC, typename GT, typename BT>
void layernorm(hls::stream<ap_uint<PE * IB> > &in, hls::stream<ap_uint<PE * OB> > &out, const GT gmul[PE][C / PE],
               const BT bias[PE][C / PE], unsigned rows) {
    static_assert(C % PE == 0, "PE must divide the channel count");
    constexpr unsigned CF = C / PE;
    constexpr unsigned LC = bits_for(C);                 // C < 2^LC
    constexpr unsigned SB = IB + LC + 1;                 // |sum x| < C 2^IB
    constexpr unsigned QB = 2 * IB + LC;                 // sum x^2 < C 2^(2IB)
    constexpr unsigned VB = QB + 2 * LC;                 // V <= C^2 sum x^2
    constexpr unsigned VEB = (VB > bits_for(EPS) ? VB : bits_for(EPS)) + 1;
    constexpr unsigned DB = IB + LC + 2;                 // |C x - S| <= C 2^IB
    ap_uint<PE * IB> row[CF];
    for (unsigned r = 0; r < rows; r++) {
        ap_int<SB> s = 0;
        ap_uint<QB> q = 0;
        for (unsigned cf = 0; cf < CF; cf++) {
#pragma HLS PIPELINE II=1
            const ap_uint<PE * IB> word = in.read();
            row[cf] = word;
            for (unsigned pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
                const ap_int<IB + 1> x = field<IB, SIGNED>(word, pe);
                s += x;
                q += ap_uint<2 * IB>(x * x);
            }
        }
        // C sum x^2 - S^2 >= 0 (Cauchy-Schwarz), so V is computed unsigned
        const ap_uint<VB> v = ap_uint<VB>(C) * ap_uint<VB>(ap_int<VB + 1>(ap_uint<VB>(C) * q) - ap_int<VB + 1>(s * s));
        const ap_uint<VEB> root = isqrt<VEB>(ap_uint<VEB>(v) + ap_uint<VEB>(EPS));
        const ap_uint<R + 1> inv = (ap_uint<R + 1>(1) << R) / (root == 0 ? ap_uint<VEB>(1) : ap_uint<VEB>(root));
        for (unsigned cf = 0; cf < CF; cf++) {
#pragma HLS PIPELINE II=1
            ap_uint<PE * OB> y = 0;
            for (unsigned pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
                const ap_int<DB> d = ap_int<DB>(C) * field<IB, SIGNED>(row[cf], pe) - s;
                const ap_int<R + 2> dn = d * inv;          // |D * inv| <= 2^R
                const ap_int<ACC> acc = ap_int<ACC>(dn) * ap_int<ACC>(gmul[pe][cf]) + ap_int<ACC>(bias[pe][cf]);
                y(pe * OB + OB - 1, pe * OB) = requant<OB, SHIFT, ACC>(acc);
            }
            out.write(y);
        }
    }
}

// QD attention of windows of N query tokens and M key / value tokens: per query i and head h
// (DV = C / HEADS channels, bits [h DV, h DV + DV) of the C-bit row, 1 <-> +1)
//   score_j = 2 popcount(xnor(q_i, k_j)) - DV, E_j = table[score_j + DV] = table[2 popcount],
//   total = sum_j E_j, level_j = #{sigma in 1..L : DEN E_j >= (NUM1 + (sigma - 1) STEP) total},
//   context = sum_j level_j v_j  (v = +-1).
// QD's levels are DEN = 2 L, NUM1 = 1, STEP = 2 (round(L A) >= sigma - 1/2); BinaryViT's
// c clip(round(A / c), 0, 1) is one level with NUM1 / DEN = c / 2.
// q, k, v: one C-bit word per token.  A window's N queries are read first, then its M keys
// and values side by side (M < N where the keys come from pooled tokens, which their producer
// emits after it has seen the map), so a window is buffered before its first query.  Then,
// per (query, head), two passes over the M keys, PE keys per cycle: the exp table lookups and
// their total, then the levels (which need the total) and the context.  Output: one word of DV
// signed OB-bit values per (query, head), heads in order.  EB: bits of a table entry.
template <unsigned N, unsigned M, unsigned C, unsigned HEADS, unsigned L, unsigned long long NUM1,
          unsigned long long STEP, unsigned long long DEN, unsigned PE, unsigned EB, unsigned OB, typename T>
void qd_attention(hls::stream<ap_uint<C> > &q, hls::stream<ap_uint<C> > &k, hls::stream<ap_uint<C> > &v,
                  hls::stream<ap_uint<(C / HEADS) * OB> > &out, const T table[2 * (C / HEADS) + 1],
                  unsigned windows) {
    static_assert(C % HEADS == 0, "the heads must divide the channels");
    static_assert(M % PE == 0, "PE (keys per cycle) must divide the keys of a window");
    static_assert((1ull << (OB - 1)) > (unsigned long long)L * M, "OB bits must hold +-L*M");
    constexpr unsigned DV = C / HEADS;
    constexpr unsigned TB = EB + bits_for(M);            // total <= M max(E)
    constexpr unsigned long long NUML = NUM1 + (L - 1) * STEP;
    constexpr unsigned CB = TB + bits_for(DEN > NUML ? DEN : NUML) + 1;   // both sides of the level compare
    ap_uint<C> qbuf[N], kbuf[M], vbuf[M];
    ap_uint<EB> e[M];
#pragma HLS ARRAY_PARTITION variable=e cyclic factor=PE
    for (unsigned win = 0; win < windows; win++) {
        for (unsigned t = 0; t < N; t++) {
#pragma HLS PIPELINE II=1
            qbuf[t] = q.read();
        }
        for (unsigned t = 0; t < M; t++) {
#pragma HLS PIPELINE II=1
            kbuf[t] = k.read();
            vbuf[t] = v.read();
        }
        for (unsigned i = 0; i < N; i++) {
            for (unsigned h = 0; h < HEADS; h++) {
                const ap_uint<DV> qh = qbuf[i](h * DV + DV - 1, h * DV);
                ap_uint<TB> total = 0;
                for (unsigned jf = 0; jf < M / PE; jf++) {
#pragma HLS PIPELINE II=1
                    for (unsigned p = 0; p < PE; p++) {
#pragma HLS UNROLL
                        const unsigned j = jf * PE + p;
                        const ap_uint<DV> agree = ~(qh ^ ap_uint<DV>(kbuf[j](h * DV + DV - 1, h * DV)));
                        const ap_uint<EB> ej = table[2 * popcount<DV, bits_for(DV)>(agree)];
                        e[j] = ej;
                        total += ej;
                    }
                }
                ap_int<OB> ctx[DV];
#pragma HLS ARRAY_PARTITION variable=ctx complete
                for (unsigned c = 0; c < DV; c++) ctx[c] = 0;
                for (unsigned jf = 0; jf < M / PE; jf++) {
#pragma HLS PIPELINE II=1
                    for (unsigned p = 0; p < PE; p++) {
#pragma HLS UNROLL
                        const unsigned j = jf * PE + p;
                        const ap_uint<CB> lhs = ap_uint<CB>(DEN) * e[j];
                        ap_uint<bits_for(L)> level = 0;
                        for (unsigned sigma = 0; sigma < L; sigma++) {
                            // a tie counts ('round half up' for QD)
                            if (lhs >= ap_uint<CB>(NUM1 + sigma * STEP) * total) level++;
                        }
                        const ap_uint<DV> vh = vbuf[j](h * DV + DV - 1, h * DV);
                        for (unsigned c = 0; c < DV; c++) {
                            ctx[c] += vh[c] ? ap_int<OB>(level) : ap_int<OB>(-ap_int<OB>(level));
                        }
                    }
                }
                ap_uint<DV * OB> word = 0;
                for (unsigned c = 0; c < DV; c++) word(c * OB + OB - 1, c * OB) = ctx[c];
                out.write(word);
            }
        }
    }
}

}  // namespace bhvit
