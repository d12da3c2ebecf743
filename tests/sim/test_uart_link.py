"""A whole digits inference through SerialDevice → pty → UART pins → bridge → Verilated core.

Slow: the Verilator build of ``hwq_linked`` (bridge + the 8x8 shift_add core) takes one to two
minutes cold, and the digits INQ network is quantized here (about a minute).
"""

import numpy as np
import pytest

from hwq import golden
from hwq.layout import compile, core_config
from hwq.quant import quantize
from hwq.workloads import digits

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits_case():
    data = digits.load_data()
    network = quantize(digits.pretrained(), "inq", bits=4, data=data, seed=0).network
    program = compile(network, core_config(network, pe="shift_add", lanes=8, simd=8))
    x = golden.quantize_input(data.x_test[:2].numpy(), network.input_scale, network.act_bits)
    return network, program, x


def test_digits_inference_through_the_link_is_bit_exact_and_survives_damaged_bytes(digits_case):
    from hwq.sim.uart_link import simulate_uart

    network, program, x = digits_case
    expected = golden.run(network, x)
    clean = simulate_uart(program, x)
    np.testing.assert_array_equal(clean["outputs"], expected)
    np.testing.assert_array_equal(clean["layer_cycles"], clean["model_layer_cycles"][None]
                                  .repeat(len(x), 0))
    assert clean["retries"] == 0
    # two dropped and one corrupted request byte, and the sync byte of two replies, each in
    # another command of the load (weight bursts of 263 request bytes, 6-byte replies from
    # reply byte 70 on; a repeated command shifts the later indices): sequence numbers 12 and
    # 17 (sync), 13 and 25 (a lost byte, frame timeout), 19 (CRC); each command is repeated
    faults = {"drop": {"to_device": [1000, 5000]},
              "corrupt": {"to_device": [3000], "to_host": [100, 142]}}
    damaged = simulate_uart(program, x, faults=faults)
    np.testing.assert_array_equal(damaged["outputs"], expected)
    assert damaged["retries"] == 5
    assert damaged["failures"] == [
        "WRITE seq 12: reply starts with 0xb5, not the sync byte 0xa5",
        "WRITE seq 13: the bridge refused the request: FRAME_TIMEOUT",
        "WRITE seq 17: reply starts with 0xb5, not the sync byte 0xa5",
        "WRITE seq 19: the bridge refused the request: BAD_CRC",
        "WRITE seq 25: the bridge refused the request: FRAME_TIMEOUT"]


def test_a_link_that_loses_every_try_is_a_link_error(digits_case):
    from hwq.host.serial import LinkError
    from hwq.sim.uart_link import simulate_uart

    _, program, x = digits_case
    # the SEQ byte of HELLO's request and of its three repeats (7-byte frames) is lost
    faults = {"drop": {"to_device": [2, 9, 16, 23]}}
    with pytest.raises(LinkError, match="^No hwq UART bridge answers on /dev/pts/"
                                        r"\d+ at 3000000 baud: .*HELLO failed after 4 "
                                        r"attempt\(s\): the bridge refused the request: "
                                        "FRAME_TIMEOUT$"):
        simulate_uart(program, x[:1], faults=faults)
