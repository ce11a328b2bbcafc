"""Stages 3-5 of the pipeline: supported boards, the Vitis HLS / Vivado scripts, deployment."""
