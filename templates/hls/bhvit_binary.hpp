// Binary kernels of the BHViT dataflow: the sign threshold and the XNOR-popcount
// matrix-vector unit (MVAU).  Streams carry one folded word per cycle:
//   threshold_sign  in : PE x IB-bit signed values    out: PE bits (1 <-> +1)
//   mvau_xnor       in : SIMD bits of the input vector  out: PE x OB-bit popcounts
// Element e of a word sits in bits [e*W, e*W + W).  The golden semantics are
// hw/kernels/binary.py (threshold, xnor_popcount_dot) and FINN's MVAU with
// binaryXnorMode=1: out[n] = popcount(xnor(x, w[n])) over the MW inputs.
#pragma once
#include <ap_int.h>
#include <hls_stream.h>

#include "bhvit_fixed.hpp"

namespace bhvit {

// Number of ones in a SIMD-bit word: unrolled into an adder tree by HLS.
template <unsigned N, unsigned OB>
ap_uint<OB> popcount(ap_uint<N> v) {
#pragma HLS INLINE
    ap_uint<OB> s = 0;
    for (unsigned i = 0; i < N; i++) {
#pragma HLS UNROLL
        s += v[i];
    }
    return s;
}

// sign(x - t) per channel: bit = (x >= thr[c]).  Channel c = cf * PE + pe.
// Thresholds are compared as IB+1-bit values so that "always" and "never" fit
// (they are clipped to [min(x), max(x) + 1] when generated).  T: their C type.
template <unsigned C, unsigned PE, unsigned IB, typename T>
void threshold_sign(hls::stream<ap_uint<PE * IB> > &in, hls::stream<ap_uint<PE> > &out,
                    const T thr[PE][C / PE], unsigned reps) {
    static_assert(C % PE == 0, "PE must divide the channel count");
    constexpr unsigned CF = C / PE;
    for (unsigned r = 0; r < reps; r++) {
        for (unsigned cf = 0; cf < CF; cf++) {
#pragma HLS PIPELINE II=1
            const ap_uint<PE * IB> word = in.read();
            ap_uint<PE> bits = 0;
            for (unsigned pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
                const ap_int<IB> x = word(pe * IB + IB - 1, pe * IB);
                bits[pe] = (ap_int<IB + 1>(x) >= ap_int<IB + 1>(thr[pe][cf])) ? 1 : 0;
            }
            out.write(bits);
        }
    }
}

// XNOR-popcount matrix-vector product, FINN's folding: the MH outputs in NF =
// MH/PE folds of PE, the MW inputs in SF = MW/SIMD folds of SIMD.  The input
// vector is read once (first neuron fold) and replayed from a buffer, so one
// vector takes NF * SF cycles at II=1.  Weight word w[pe][nf * SF + sf] holds
// inputs sf*SIMD .. sf*SIMD+SIMD-1 of output nf*PE + pe.
// W: the C type of a weight word (uint64_t up to 64 bits, else ap_uint<SIMD>).
template <unsigned MW, unsigned MH, unsigned SIMD, unsigned PE, unsigned OB, typename W>
void mvau_xnor(hls::stream<ap_uint<SIMD> > &in, hls::stream<ap_uint<PE * OB> > &out,
               const W weights[PE][(MH / PE) * (MW / SIMD)], unsigned reps) {
    static_assert(MW % SIMD == 0, "SIMD must divide MW");
    static_assert(MH % PE == 0, "PE must divide MH");
    static_assert((1u << OB) > MW, "OB bits must hold a popcount of MW");
    constexpr unsigned SF = MW / SIMD;
    constexpr unsigned NF = MH / PE;
    ap_uint<SIMD> buf[SF];
    ap_uint<OB> acc[PE];
#pragma HLS ARRAY_PARTITION variable=acc complete
    for (unsigned r = 0; r < reps; r++) {
        for (unsigned nf = 0; nf < NF; nf++) {
            for (unsigned sf = 0; sf < SF; sf++) {
#pragma HLS PIPELINE II=1
                const ap_uint<SIMD> x = read_or_replay(in, buf, nf, sf);
                ap_uint<PE * OB> word = 0;
                for (unsigned pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
                    const ap_uint<SIMD> agree = ~(x ^ ap_uint<SIMD>(weights[pe][nf * SF + sf]));
                    const ap_uint<OB> part = popcount<SIMD, OB>(agree);
                    acc[pe] = (sf == 0) ? part : ap_uint<OB>(acc[pe] + part);
                    word(pe * OB + OB - 1, pe * OB) = acc[pe];
                }
                if (sf == SF - 1) out.write(word);
            }
        }
    }
}

// Binary convolution with zero-padded taps (MSGDC's dilated grouped 3x3 and the
// 2x2 patch merging).  Input: one C-bit word per token (1 <-> +1) of an H x W
// map, buffered for one image; output: per output token, O/PE words of PE
// signed OB-bit sums.  A tap outside the map contributes 0 (not +-1): the sum
// over the valid taps is 2 * popcount(xnor) - their bit count.  Weight word
// w[o][ky * K + kx] holds the C/G input channels of output o's group.
template <unsigned H, unsigned W, unsigned C, unsigned O, unsigned G, unsigned K, unsigned S, unsigned P,
          unsigned D, unsigned PE, unsigned OB, typename WT>
void xnor_conv(hls::stream<ap_uint<C> > &in, hls::stream<ap_uint<PE * OB> > &out, const WT w[O][K * K],
               unsigned images) {
    static_assert(C % G == 0 && O % G == 0, "groups must divide the channel counts");
    static_assert(O % PE == 0, "PE must divide the output channels");
    constexpr unsigned CG = C / G;
    constexpr unsigned HO = (H + 2 * P - D * (K - 1) - 1) / S + 1;
    constexpr unsigned WO = (W + 2 * P - D * (K - 1) - 1) / S + 1;
    ap_uint<C> buf[H * W];
    for (unsigned img = 0; img < images; img++) {
        read_words<H * W>(in, buf);
        for (unsigned ho = 0; ho < HO; ho++) {
            for (unsigned wo = 0; wo < WO; wo++) {
                for (unsigned of = 0; of < O / PE; of++) {
#pragma HLS PIPELINE
                    ap_uint<PE * OB> word = 0;
                    for (unsigned pe = 0; pe < PE; pe++) {
                        const unsigned o = of * PE + pe;
                        const unsigned g = o / (O / G);
                        ap_int<OB + 2> acc = 0;
                        for (unsigned t = 0; t < K * K; t++) {
                            const int hi = int(ho * S + (t / K) * D) - int(P);
                            const int wi = int(wo * S + (t % K) * D) - int(P);
                            if (hi < 0 || hi >= int(H) || wi < 0 || wi >= int(W)) continue;   // zero tap
                            const ap_uint<CG> x = buf[hi * W + wi](g * CG + CG - 1, g * CG);
                            const ap_uint<CG> agree = ~(x ^ ap_uint<CG>(w[o][t]));
                            acc += 2 * ap_int<OB + 2>(popcount<CG, OB + 1>(agree)) - int(CG);
                        }
                        word(pe * OB + OB - 1, pe * OB) = ap_int<OB>(acc);
                    }
                    out.write(word);
                }
            }
        }
    }
}

}  // namespace bhvit
