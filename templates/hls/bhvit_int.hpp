// Integer (multi-bit weight) kernels of the BHViT dataflow: the stem convolution
// on the raw uint8 image and the classifier.  Both use FINN's MVAU folding: the
// O (or N) outputs in NF = O/PE folds of PE, the T products of one output in
// SF = T/SIMD folds of SIMD, so one output token takes NF * SF cycles at II=1 with
// PE * SIMD multipliers.  Weight w[pe][nf * SF + sf][s] is term sf*SIMD + s of
// output nf*PE + pe.  Golden semantics: hw/kernels/fixed.py (int_conv2d,
// int_matmul); the outputs are the exact sums, no rounding.
#pragma once
#include <ap_int.h>
#include <hls_stream.h>
#include <stdint.h>

#include "bhvit_fixed.hpp"

namespace bhvit {

// Convolution of an H x W image of CIN 8-bit unsigned channels (one word per
// pixel, channel c in bits [8c, 8c+8)) with K x K kernels at stride S, no
// padding.  Term t of an output is channel t / (K*K), tap (t / K) % K, t % K
// (the order of w.reshape(O, -1)).  The image is buffered, so any stride works
// (the stem's stride equals K: every pixel is used once).  AB: accumulator bits
// (the generator's bound on sum |w| * 255), OB: output bits.
template <unsigned H, unsigned W, unsigned CIN, unsigned O, unsigned K, unsigned S, unsigned SIMD, unsigned PE,
          unsigned AB, unsigned OB, typename WT>
void int_conv(hls::stream<ap_uint<CIN * 8> > &in, hls::stream<ap_uint<PE * OB> > &out,
              const WT w[PE][(O / PE) * (CIN * K * K / SIMD)][SIMD], unsigned images) {
    constexpr unsigned T = CIN * K * K;
    static_assert(T % SIMD == 0, "SIMD must divide CIN * K * K");
    static_assert(O % PE == 0, "PE must divide the output channels");
    static_assert(H >= K && W >= K, "the kernel must fit in the image");
    constexpr unsigned SF = T / SIMD, NF = O / PE;
    constexpr unsigned HO = (H - K) / S + 1, WO = (W - K) / S + 1;
    ap_uint<CIN * 8> buf[H * W];
    ap_int<AB> acc[PE];
#pragma HLS ARRAY_PARTITION variable=acc complete
    for (unsigned img = 0; img < images; img++) {
        read_words<H * W>(in, buf);
        for (unsigned ho = 0; ho < HO; ho++) {
            for (unsigned wo = 0; wo < WO; wo++) {
                for (unsigned nf = 0; nf < NF; nf++) {
                    for (unsigned sf = 0; sf < SF; sf++) {
#pragma HLS PIPELINE II=1
                        ap_uint<PE * OB> word = 0;
                        for (unsigned pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
                            ap_int<AB> part = 0;
                            for (unsigned s = 0; s < SIMD; s++) {
#pragma HLS UNROLL
                                const unsigned t = sf * SIMD + s;
                                const unsigned c = t / (K * K), ky = (t / K) % K, kx = t % K;
                                const ap_uint<CIN * 8> px = buf[(ho * S + ky) * W + wo * S + kx];
                                const ap_int<9> x = ap_uint<8>(px(c * 8 + 7, c * 8));
                                part += x * ap_int<9>(w[pe][nf * SF + sf][s]);
                            }
                            acc[pe] = (sf == 0) ? part : ap_int<AB>(acc[pe] + part);
                            word(pe * OB + OB - 1, pe * OB) = ap_int<OB>(acc[pe]);
                        }
                        if (sf == SF - 1) out.write(word);
                    }
                }
            }
        }
    }
}

// y = x @ w.T + bias on rows of K signed (SIGNED) or unsigned IB-bit values,
// streamed SIMD per word; outputs PE per word.  The row is read once (first
// output fold) and replayed from a buffer, as in mvau_xnor.  AB: accumulator
// bits (the generator's bound on sum |w| * max|x| + |bias| over the input type);
// OB, the graph's output type, can be narrower where the graph bounds x tighter
// than its type (the classifier's input is a sum of 10-bit tokens).
template <unsigned K, unsigned N, unsigned SIMD, unsigned PE, unsigned IB, bool SIGNED, unsigned AB, unsigned OB,
          typename WT, typename BT>
void int_linear(hls::stream<ap_uint<SIMD * IB> > &in, hls::stream<ap_uint<PE * OB> > &out,
                const WT w[PE][(N / PE) * (K / SIMD)][SIMD], const BT bias[PE][N / PE], unsigned rows) {
    static_assert(K % SIMD == 0, "SIMD must divide the input width");
    static_assert(N % PE == 0, "PE must divide the output width");
    constexpr unsigned SF = K / SIMD, NF = N / PE;
    ap_uint<SIMD * IB> buf[SF];
    ap_int<AB> acc[PE];
#pragma HLS ARRAY_PARTITION variable=acc complete
    for (unsigned r = 0; r < rows; r++) {
        for (unsigned nf = 0; nf < NF; nf++) {
            for (unsigned sf = 0; sf < SF; sf++) {
#pragma HLS PIPELINE II=1
                const ap_uint<SIMD * IB> x = read_or_replay(in, buf, nf, sf);
                ap_uint<PE * OB> word = 0;
                for (unsigned pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
                    // the bias starts the sum, so the last fold's accumulator is the output
                    ap_int<AB> part = (sf == 0) ? ap_int<AB>(bias[pe][nf]) : ap_int<AB>(0);
                    for (unsigned s = 0; s < SIMD; s++) {
#pragma HLS UNROLL
                        part += field<IB, SIGNED>(x, s) * ap_int<AB>(w[pe][nf * SF + sf][s]);
                    }
                    acc[pe] = (sf == 0) ? part : ap_int<AB>(acc[pe] + part);
                    word(pe * OB + OB - 1, pe * OB) = ap_int<OB>(acc[pe]);
                }
                if (sf == SF - 1) out.write(word);
            }
        }
    }
}

}  // namespace bhvit
