// AXI-Stream (valid/ready) FIFO for the stitched top: WIDTH-bit words, DEPTH entries
// (any DEPTH >= 2), full throughput, registered flags; `count` is the occupancy, which the
// RTL simulation records to size the FIFOs.  Memory without reset: LUTRAM or BRAM.
module bhvit_fifo #(
    parameter int WIDTH = 8,
    parameter int DEPTH = 2
) (
    input  logic             clk,
    input  logic             rst_n,
    input  logic [WIDTH-1:0] in0_tdata,
    input  logic             in0_tvalid,
    output logic             in0_tready,
    output logic [WIDTH-1:0] out_tdata,
    output logic             out_tvalid,
    input  logic             out_tready,
    output logic [$clog2(DEPTH+1)-1:0] count
);
    localparam int AW = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    localparam int CW = $clog2(DEPTH + 1);
    logic [WIDTH-1:0] mem [DEPTH];
    logic [AW-1:0] rd, wr;
    logic push, pop;

    assign in0_tready = (count != CW'(DEPTH));
    assign out_tvalid = (count != '0);
    assign out_tdata = mem[rd];
    assign push = in0_tvalid && in0_tready;
    assign pop = out_tvalid && out_tready;

    always_ff @(posedge clk) begin
        if (!rst_n) begin
            rd <= '0;
            wr <= '0;
            count <= '0;
        end else begin
            if (push) wr <= (wr == AW'(DEPTH - 1)) ? '0 : wr + 1'b1;
            if (pop) rd <= (rd == AW'(DEPTH - 1)) ? '0 : rd + 1'b1;
            if (push && !pop) count <= count + 1'b1;
            else if (pop && !push) count <= count - 1'b1;
        end
    end
    always_ff @(posedge clk) begin
        if (push) mem[wr] <= in0_tdata;
    end
endmodule
