// Stream plumbing of the stitched RTL top (the RTL twins of templates/hls/bhvit_stream.hpp):
// a fan-out to N readers and a re-folding gearbox between producers and consumers of
// different PE.  AXI-Stream valid/ready, valid never waits for ready.

// One stream to N readers.  Each copy takes the word once; the input is released when
// every copy has taken it (a reader that is ready earlier does not wait for the others).
module bhvit_fork #(
    parameter int WIDTH = 8,
    parameter int N = 2
) (
    input  logic               clk,
    input  logic               rst_n,
    input  logic [WIDTH-1:0]   in0_tdata,
    input  logic               in0_tvalid,
    output logic               in0_tready,
    output logic [N*WIDTH-1:0] out_tdata,
    output logic [N-1:0]       out_tvalid,
    input  logic [N-1:0]       out_tready
);
    logic [N-1:0] taken;     // copies that already took the current word
    assign out_tdata = {N{in0_tdata}};
    assign out_tvalid = {N{in0_tvalid}} & ~taken;
    assign in0_tready = &(out_tready | taken);
    always_ff @(posedge clk) begin
        if (!rst_n || (in0_tvalid && in0_tready)) taken <= '0;
        else taken <= taken | (out_tvalid & out_tready);
    end
endmodule

// Re-fold a stream of IB-bit values from IN_PE to OUT_PE values per word, widening each value
// to OB bits (sign-extended when SIGNED).  One of IN_PE, OUT_PE divides the other (the top
// chains two gearboxes through their gcd otherwise), so rows need no buffer: widening collects
// OUT_PE / IN_PE input words into one output word, narrowing splits one input word into
// IN_PE / OUT_PE output words; one input or output word per cycle.
module bhvit_refold #(
    parameter int IB = 8,
    parameter int OB = 8,
    parameter bit SIGNED = 1'b1,
    parameter int IN_PE = 1,
    parameter int OUT_PE = 1
) (
    input  logic                 clk,
    input  logic                 rst_n,
    input  logic [IN_PE*IB-1:0]  in0_tdata,
    input  logic                 in0_tvalid,
    output logic                 in0_tready,
    output logic [OUT_PE*OB-1:0] out_tdata,
    output logic                 out_tvalid,
    input  logic                 out_tready
);
    // every value of the input word, widened
    logic [IN_PE*OB-1:0] wide;
    for (genvar e = 0; e < IN_PE; e++) begin : g_widen
        if (SIGNED) begin : g_s
            assign wide[e*OB +: OB] = OB'($signed(in0_tdata[e*IB +: IB]));
        end else begin : g_u
            assign wide[e*OB +: OB] = OB'(in0_tdata[e*IB +: IB]);
        end
    end
    wire in_fire = in0_tvalid && in0_tready;
    wire out_fire = out_tvalid && out_tready;

    if (OUT_PE >= IN_PE) begin : g_collect
        localparam int K = OUT_PE / IN_PE;
        localparam int KW = (K > 1) ? $clog2(K) : 1;
        logic [OUT_PE*OB-1:0] acc;
        logic [KW-1:0] k;
        logic full;
        assign out_tdata = acc;
        assign out_tvalid = full;
        assign in0_tready = !full || out_tready;      // room as soon as the full word leaves
        always_ff @(posedge clk) begin
            if (!rst_n) begin
                k <= '0;
                full <= 1'b0;
            end else begin
                if (out_fire) full <= 1'b0;
                if (in_fire) begin
                    if (k == KW'(K - 1)) begin
                        k <= '0;
                        full <= 1'b1;
                    end else begin
                        k <= k + 1'b1;
                    end
                end
            end
        end
        // the words shift in from the top, so after K of them the first sits in lanes 0..IN_PE-1:
        // one clock enable for every bit (writing word k in place decoded k per bit, about one
        // LUT per output bit)
        if (K > 1) begin : g_shift
            always_ff @(posedge clk) begin
                if (in_fire) acc <= {wide, acc[OUT_PE*OB-1:IN_PE*OB]};
            end
        end else begin : g_copy
            always_ff @(posedge clk) begin
                if (in_fire) acc <= wide;
            end
        end
    end else begin : g_split
        localparam int K = IN_PE / OUT_PE;
        localparam int KW = $clog2(K);
        logic [IN_PE*OB-1:0] hold;
        logic [KW-1:0] k;
        logic have;
        assign out_tdata = hold[k*OUT_PE*OB +: OUT_PE*OB];
        assign out_tvalid = have;
        assign in0_tready = !have || (out_tready && k == KW'(K - 1));
        always_ff @(posedge clk) begin
            if (!rst_n) begin
                k <= '0;
                have <= 1'b0;
            end else begin
                if (out_fire) begin
                    k <= (k == KW'(K - 1)) ? '0 : k + 1'b1;
                    if (k == KW'(K - 1)) have <= 1'b0;
                end
                if (in_fire) have <= 1'b1;
            end
        end
        always_ff @(posedge clk) begin
            if (in_fire) hold <= wide;
        end
    end
endmodule
