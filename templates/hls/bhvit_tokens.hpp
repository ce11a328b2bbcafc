// Data-movement kernels of the BHViT dataflow on token streams: rows are the
// tokens of an H x W map in row-major order, each row C channels folded into
// C/PE words of PE fields.  Golden semantics: hw/kernels/shift.py (box_sum,
// channel_mix) and hw/kernels/tokens.py (repeat_channels, group_sum_channels).
// Map and window buffers (here and in the other kernel headers) are plain
// locals, not statics: two nodes with the same template arguments are two
// dataflow processes and must not share one memory.
#pragma once
#include <ap_int.h>
#include <hls_stream.h>

#include "bhvit_fixed.hpp"

namespace bhvit {

// Circular box sum along H (ALONG_H) or W: out(h, w) = sum_{s=-R..R} x(h+s mod H, w)
// (or x(h, w+s mod W)).  The wrap-around needs the whole map, so one image is
// buffered, then the sums stream out.
template <unsigned H, unsigned W, unsigned C, unsigned PE, unsigned IB, bool SIGNED, unsigned OB, unsigned R,
          bool ALONG_H>
void shift_box(hls::stream<ap_uint<PE * IB> > &in, hls::stream<ap_uint<PE * OB> > &out, unsigned images) {
    static_assert(C % PE == 0, "PE must divide the channel count");
    constexpr unsigned CF = C / PE;
    constexpr unsigned L = ALONG_H ? H : W;
    ap_uint<PE * IB> buf[H * W * CF];
    for (unsigned img = 0; img < images; img++) {
        read_words<H * W * CF>(in, buf);
        for (unsigned h = 0; h < H; h++) {
            for (unsigned w = 0; w < W; w++) {
                for (unsigned cf = 0; cf < CF; cf++) {
#pragma HLS PIPELINE
                    ap_int<OB + 1> acc[PE];
                    for (unsigned pe = 0; pe < PE; pe++) acc[pe] = 0;
                    for (unsigned k = 0; k < 2 * R + 1; k++) {
                        const unsigned pos = ((ALONG_H ? h : w) + L + k - R) % L;   // L > R: no underflow
                        const unsigned hh = ALONG_H ? pos : h, ww = ALONG_H ? w : pos;
                        const ap_uint<PE * IB> word = buf[(hh * W + ww) * CF + cf];
                        for (unsigned pe = 0; pe < PE; pe++) acc[pe] += field<IB, SIGNED>(word, pe);
                    }
                    ap_uint<PE * OB> o = 0;
                    for (unsigned pe = 0; pe < PE; pe++) o(pe * OB + OB - 1, pe * OB) = ap_int<OB>(acc[pe]);
                    out.write(o);
                }
            }
        }
    }
}

// The fused shift unit (hw/ops/shift_conv.py, ShiftConv.lower): a depthwise convolution over the
// 9-tap cross, out(h, w, c) = sum_t coef[c][t] * x(h + DH[t] mod H, w + DW[t] mod W, c), circular
// (BHViT's rolls) or, with ZERO_PAD, taps outside the map reading 0 (BinaryViT's zero-padded
// pools) (golden: hw/kernels/shift.py cross_conv, whose CROSS_TAPS order DH / DW follow).  One
// image is buffered, then every output word gathers its 9 taps.
template <unsigned H, unsigned W, unsigned C, unsigned PE, unsigned IB, bool SIGNED, unsigned OB, bool ZERO_PAD,
          typename T>
void shift_conv(hls::stream<ap_uint<PE * IB> > &in, hls::stream<ap_uint<PE * OB> > &out, const T coef[C][9],
                unsigned images) {
    static_assert(C % PE == 0, "PE must divide the channel count");
    constexpr unsigned CF = C / PE;
    const int DH[9] = {0, -1, 1, -2, 2, 0, 0, 0, 0};
    const int DW[9] = {0, 0, 0, 0, 0, -1, 1, -2, 2};
    ap_uint<PE * IB> buf[H * W * CF];
    for (unsigned img = 0; img < images; img++) {
        read_words<H * W * CF>(in, buf);
        for (unsigned h = 0; h < H; h++) {
            for (unsigned w = 0; w < W; w++) {
                for (unsigned cf = 0; cf < CF; cf++) {
#pragma HLS PIPELINE
                    ap_int<OB> acc[PE];
                    for (unsigned pe = 0; pe < PE; pe++) acc[pe] = 0;
                    for (unsigned t = 0; t < 9; t++) {
                        // (pos + d) mod L for |d| <= 2: + 2L keeps it non-negative even for L < 3
                        // (a fixed expression, no data-dependent loop inside the pipeline)
                        const unsigned hh = unsigned(int(h) + DH[t] + 2 * int(H)) % H;
                        const unsigned ww = unsigned(int(w) + DW[t] + 2 * int(W)) % W;
                        const bool inside = int(h) + DH[t] >= 0 && int(h) + DH[t] < int(H) &&
                                            int(w) + DW[t] >= 0 && int(w) + DW[t] < int(W);
                        const ap_uint<PE * IB> word = buf[(hh * W + ww) * CF + cf];
                        for (unsigned pe = 0; pe < PE; pe++)
                            if (inside || !ZERO_PAD)
                                acc[pe] += ap_int<OB>(coef[cf * PE + pe][t]) * field<IB, SIGNED>(word, pe);
                    }
                    ap_uint<PE * OB> o = 0;
                    for (unsigned pe = 0; pe < PE; pe++) o(pe * OB + OB - 1, pe * OB) = acc[pe];
                    out.write(o);
                }
            }
        }
    }
}

// Channel mix: the channels in four quarters, rolled by +S along H, -S along H,
// +S along W, -S along W (np.roll: out[i] = x[i - shift]).  PE divides C/4, so a
// word never straddles two quarters.
template <unsigned H, unsigned W, unsigned C, unsigned PE, unsigned B, unsigned S>
void shift_mix(hls::stream<ap_uint<PE * B> > &in, hls::stream<ap_uint<PE * B> > &out, unsigned images) {
    static_assert((C / 4) % PE == 0 && C % 4 == 0, "PE must divide C/4");
    constexpr unsigned CF = C / PE, QF = (C / 4) / PE;
    ap_uint<PE * B> buf[H * W * CF];
    for (unsigned img = 0; img < images; img++) {
        read_words<H * W * CF>(in, buf);
        for (unsigned h = 0; h < H; h++) {
            for (unsigned w = 0; w < W; w++) {
                for (unsigned cf = 0; cf < CF; cf++) {
#pragma HLS PIPELINE II=1
                    const unsigned q = cf / QF;
                    const unsigned hh = q == 0 ? (h + H - S % H) % H : (q == 1 ? (h + S) % H : h);
                    const unsigned ww = q == 2 ? (w + W - S % W) % W : (q == 3 ? (w + S) % W : w);
                    out.write(buf[(hh * W + ww) * CF + cf]);
                }
            }
        }
    }
}

// Channel j of the output row is channel j mod C of the input row (RATIO copies).
template <unsigned C, unsigned PE, unsigned B, unsigned RATIO>
void repeat_channels(hls::stream<ap_uint<PE * B> > &in, hls::stream<ap_uint<PE * B> > &out, unsigned rows) {
    static_assert(C % PE == 0, "PE must divide the channel count");
    constexpr unsigned CF = C / PE;
    ap_uint<PE * B> row[CF];
    for (unsigned r = 0; r < rows; r++) {
        for (unsigned j = 0; j < RATIO * CF; j++) {
#pragma HLS PIPELINE II=1
            ap_uint<PE * B> word;
            if (j < CF) {
                word = in.read();
                row[j] = word;
            } else {
                word = row[j % CF];
            }
            out.write(word);
        }
    }
}

// out[c] = sum_{k < RATIO} x[c * RATIO + k]: C inputs, C / RATIO outputs, PE of each per word.
template <unsigned C, unsigned PE, unsigned IB, bool SIGNED, unsigned OB, unsigned RATIO>
void group_sum_channels(hls::stream<ap_uint<PE * IB> > &in, hls::stream<ap_uint<PE * OB> > &out, unsigned rows) {
    static_assert(C % PE == 0 && (C / RATIO) % PE == 0, "PE must divide C and C / RATIO");
    constexpr unsigned CF = C / PE, OF = C / RATIO / PE;
    ap_uint<PE * IB> row[CF];
    for (unsigned r = 0; r < rows; r++) {
        for (unsigned i = 0; i < CF; i++) {
#pragma HLS PIPELINE II=1
            row[i] = in.read();
        }
        for (unsigned of = 0; of < OF; of++) {
#pragma HLS PIPELINE
            ap_uint<PE * OB> o = 0;
            for (unsigned pe = 0; pe < PE; pe++) {
                const unsigned c = of * PE + pe;
                ap_int<OB + 1> acc = 0;
                for (unsigned k = 0; k < RATIO; k++) {
                    const unsigned src = c * RATIO + k;
                    acc += field<IB, SIGNED>(row[src / PE], src % PE);
                }
                o(pe * OB + OB - 1, pe * OB) = ap_int<OB>(acc);
            }
            out.write(o);
        }
    }
}

// K x K pooling with stride K (no padding): the maximum (MAX) or the sum (the
// average's numerator) of each block, per channel; one image buffered.
template <unsigned H, unsigned W, unsigned C, unsigned PE, unsigned IB, bool SIGNED, unsigned OB, unsigned K, bool MAX>
void token_pool(hls::stream<ap_uint<PE * IB> > &in, hls::stream<ap_uint<PE * OB> > &out, unsigned images) {
    static_assert(C % PE == 0 && H % K == 0 && W % K == 0, "PE must divide C, K must divide the map");
    constexpr unsigned CF = C / PE;
    ap_uint<PE * IB> buf[H * W * CF];
    for (unsigned img = 0; img < images; img++) {
        read_words<H * W * CF>(in, buf);
        for (unsigned bh = 0; bh < H / K; bh++) {
            for (unsigned bw = 0; bw < W / K; bw++) {
                for (unsigned cf = 0; cf < CF; cf++) {
#pragma HLS PIPELINE
                    ap_uint<PE * OB> o = 0;
                    for (unsigned pe = 0; pe < PE; pe++) {
                        ap_int<OB + 1> acc = 0;
                        for (unsigned t = 0; t < K * K; t++) {
                            const ap_int<IB + 1> v = field<IB, SIGNED>(buf[((bh * K + t / K) * W + bw * K + t % K) * CF + cf], pe);
                            if (MAX) {
                                acc = (t == 0 || v > acc) ? ap_int<OB + 1>(v) : acc;
                            } else {
                                acc += v;
                            }
                        }
                        o(pe * OB + OB - 1, pe * OB) = ap_int<OB>(acc);
                    }
                    out.write(o);
                }
            }
        }
    }
}

// Sum over the N tokens of each image, per channel: one output row per N input rows.
template <unsigned N, unsigned C, unsigned PE, unsigned IB, bool SIGNED, unsigned OB>
void token_sum(hls::stream<ap_uint<PE * IB> > &in, hls::stream<ap_uint<PE * OB> > &out, unsigned images) {
    static_assert(C % PE == 0, "PE must divide the channel count");
    constexpr unsigned CF = C / PE;
    ap_int<OB> acc[CF][PE];
    for (unsigned img = 0; img < images; img++) {
        for (unsigned n = 0; n < N; n++) {
            for (unsigned cf = 0; cf < CF; cf++) {
#pragma HLS PIPELINE II=1
                const ap_uint<PE * IB> word = in.read();
                for (unsigned pe = 0; pe < PE; pe++) {
                    const ap_int<OB> v = field<IB, SIGNED>(word, pe);
                    acc[cf][pe] = (n == 0) ? v : ap_int<OB>(acc[cf][pe] + v);
                }
            }
        }
        for (unsigned cf = 0; cf < CF; cf++) {
#pragma HLS PIPELINE II=1
            ap_uint<PE * OB> o = 0;
            for (unsigned pe = 0; pe < PE; pe++) o(pe * OB + OB - 1, pe * OB) = acc[cf][pe];
            out.write(o);
        }
    }
}

// y = table[x - min(x)]: a ROM addressed by the signed IB-bit input, PE lookups per word.
template <unsigned C, unsigned PE, unsigned IB, unsigned OB, typename T>
void lut(hls::stream<ap_uint<PE * IB> > &in, hls::stream<ap_uint<PE * OB> > &out, const T table[1u << IB],
         unsigned rows) {
    static_assert(C % PE == 0, "PE must divide the channel count");
    for (unsigned r = 0; r < rows * (C / PE); r++) {
#pragma HLS PIPELINE II=1
        const ap_uint<PE * IB> word = in.read();
        ap_uint<PE * OB> o = 0;
        for (unsigned pe = 0; pe < PE; pe++) {
            const ap_uint<IB> addr = word(pe * IB + IB - 1, pe * IB) ^ (ap_uint<IB>(1) << (IB - 1));  // x - min
            o(pe * OB + OB - 1, pe * OB) = ap_int<OB>(table[addr]);
        }
        out.write(o);
    }
}

// ---- MSMHA window reshuffles.  Per image, the attention streams hold NWIN =
// (H/WIN)(W/WIN) windows in row-major order, each WIN*WIN local tokens (row-major
// inside the window) followed by the P pooled tokens of the image.

// Window partition plus the pooled tokens appended to every window.  in: the
// H x W map (raster order), pooled: its P pooled tokens.  The pooled tokens are
// computed from the whole map, so the map is read completely before them (a
// producer that forks the map to the pooling would deadlock otherwise); both are
// buffered, then every window is emitted.
template <unsigned H, unsigned W, unsigned WIN, unsigned P, unsigned C, unsigned PE, unsigned B>
void attention_tokens(hls::stream<ap_uint<PE * B> > &in, hls::stream<ap_uint<PE * B> > &pooled,
                      hls::stream<ap_uint<PE * B> > &out, unsigned images) {
    static_assert(C % PE == 0 && H % WIN == 0 && W % WIN == 0, "PE must divide C, WIN the map");
    constexpr unsigned CF = C / PE, L = WIN * WIN;
    ap_uint<PE * B> buf[H * W * CF];
    ap_uint<PE * B> pbuf[P > 0 ? P * CF : 1];
    for (unsigned img = 0; img < images; img++) {
        read_words<H * W * CF>(in, buf);
        read_words<P * CF>(pooled, pbuf);
        for (unsigned wy = 0; wy < H / WIN; wy++) {
            for (unsigned wx = 0; wx < W / WIN; wx++) {
                for (unsigned t = 0; t < L + P; t++) {
                    for (unsigned cf = 0; cf < CF; cf++) {
#pragma HLS PIPELINE II=1
                        const unsigned y = wy * WIN + t / WIN, x = wx * WIN + t % WIN;
                        out.write(t < L ? buf[(y * W + x) * CF + cf] : pbuf[(t - L) * CF + cf]);
                    }
                }
            }
        }
    }
}

// Window reverse: the local tokens of every window back to raster order, the
// pooled tokens dropped.  A row of windows covers WIN map rows, so a band of
// WIN rows is buffered and emitted once its windows are in.
template <unsigned H, unsigned W, unsigned WIN, unsigned P, unsigned C, unsigned PE, unsigned B>
void window_reverse(hls::stream<ap_uint<PE * B> > &in, hls::stream<ap_uint<PE * B> > &out, unsigned images) {
    static_assert(C % PE == 0 && H % WIN == 0 && W % WIN == 0, "PE must divide C, WIN the map");
    constexpr unsigned CF = C / PE, L = WIN * WIN;
    ap_uint<PE * B> band[WIN * W * CF];
    for (unsigned img = 0; img < images; img++) {
        for (unsigned wy = 0; wy < H / WIN; wy++) {
            for (unsigned wx = 0; wx < W / WIN; wx++) {
                for (unsigned t = 0; t < L + P; t++) {
                    for (unsigned cf = 0; cf < CF; cf++) {
#pragma HLS PIPELINE II=1
                        const ap_uint<PE * B> word = in.read();
                        if (t < L) band[((t / WIN) * W + wx * WIN + t % WIN) * CF + cf] = word;
                    }
                }
            }
            for (unsigned i = 0; i < WIN * W * CF; i++) {
#pragma HLS PIPELINE II=1
                out.write(band[i]);
            }
        }
    }
}

// Pooled tokens summed over the windows of an image (each window carries the
// same P = SIDE x SIDE tokens through its own attention), then upsampled to the
// H x W map by nearest repeat (factor H / SIDE): map token (y, x) gets sum
// token (y / F, x / F).  The local tokens are dropped.
template <unsigned H, unsigned W, unsigned WIN, unsigned SIDE, unsigned C, unsigned PE, unsigned IB, bool SIGNED,
          unsigned OB>
void pooled_upsample(hls::stream<ap_uint<PE * IB> > &in, hls::stream<ap_uint<PE * OB> > &out, unsigned images) {
    // WIN 0: the input is the pooled map alone (no windows, no local tokens): a nearest upsampling
    static_assert(C % PE == 0 && (WIN == 0 || (H % WIN == 0 && W % WIN == 0)), "PE must divide C, WIN the map");
    static_assert(H % SIDE == 0 && W % SIDE == 0 && H / SIDE == W / SIDE, "one upsampling factor for both axes");
    constexpr unsigned CF = C / PE, L = WIN * WIN, P = SIDE * SIDE, F = H / SIDE;
    constexpr unsigned NWIN = WIN ? (H / (WIN ? WIN : 1)) * (W / (WIN ? WIN : 1)) : 1;
    ap_uint<PE * OB> acc[P * CF];
    for (unsigned img = 0; img < images; img++) {
        for (unsigned win = 0; win < NWIN; win++) {
            for (unsigned t = 0; t < L + P; t++) {
                for (unsigned cf = 0; cf < CF; cf++) {
#pragma HLS PIPELINE II=1
                    const ap_uint<PE * IB> word = in.read();
                    if (t >= L) {
                        const unsigned a = (t - L) * CF + cf;
                        const ap_uint<PE * OB> old = acc[a];
                        ap_uint<PE * OB> sum = 0;
                        for (unsigned pe = 0; pe < PE; pe++) {
                            // the first window starts the sums
                            const ap_int<OB> prev = win == 0 ? ap_int<OB>(0) : ap_int<OB>(old(pe * OB + OB - 1, pe * OB));
                            sum(pe * OB + OB - 1, pe * OB) = ap_int<OB>(prev + field<IB, SIGNED>(word, pe));
                        }
                        acc[a] = sum;
                    }
                }
            }
        }
        for (unsigned y = 0; y < H; y++) {
            for (unsigned x = 0; x < W; x++) {
                for (unsigned cf = 0; cf < CF; cf++) {
#pragma HLS PIPELINE II=1
                    out.write(acc[((y / F) * SIDE + x / F) * CF + cf]);
                }
            }
        }
    }
}

}  // namespace bhvit
