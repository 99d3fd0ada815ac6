"""The cost model, checked against figures computed by hand from the price table."""

from __future__ import annotations

import math

import pytest

from faasopt.cost import (
    PRICES,
    billed_seconds,
    job_cost,
    perf_per_dollar,
    price_of,
    rates,
    worker_dollars,
)

LAMBDA = price_of("lambda")


def test_ten_lambda_workers_of_2_gb_for_a_minute():
    # 10 x 2 GB x 60 s x 0.0000166667 $/GB-s = 0.020000040 $; 10 requests x 0.20 $/1e6 = 2e-6 $;
    # coordinator and NATS: 2 x 0.096 $/h x 60 s / 3600 = 0.0032 $.
    cost = job_cost(LAMBDA, 2048, {f"w{i}": 60.0 for i in range(10)}, seconds=60.0)
    assert cost.workers["w3"] == pytest.approx(0.0020000040 + 2e-7, rel=1e-12)
    assert sum(cost.workers.values()) == pytest.approx(0.02000204, rel=1e-12)
    assert cost.always_on == pytest.approx(0.0032, rel=1e-12)
    assert cost.total == pytest.approx(0.02320204, rel=1e-12)
    assert cost.perf_per_dollar == pytest.approx(1 / (60 * 0.02320204), rel=1e-12)


def test_report_fields_carry_the_contract_names():
    cost = job_cost(LAMBDA, 1024, {"b": 2.0, "a": 1.0}, seconds=3.0, invocations={"b": 3})
    report = cost.to_dict()
    assert set(report) == {"costDollars", "dollarsPerWorker", "alwaysOnDollars", "perfPerDollar"}
    assert list(report["dollarsPerWorker"]) == ["a", "b"]
    assert report["dollarsPerWorker"]["b"] == pytest.approx(2 * 0.0000166667 + 3 * 0.2e-6)
    assert report["costDollars"] == pytest.approx(cost.total)


@pytest.mark.parametrize(
    ("seconds", "billed"),
    [(60.0, 60.0), (0.0005, 0.001), (60.0004, 60.001), (1.2345, 1.235), (0.0, 0.0)],
)
def test_lambda_bills_whole_milliseconds_rounded_up(seconds, billed):
    assert billed_seconds(seconds, LAMBDA.granularity_seconds) == pytest.approx(billed, abs=1e-12)


def test_a_millisecond_more_costs_a_millisecond_more():
    one = worker_dollars(LAMBDA, 1024, 1.0)
    more = worker_dollars(LAMBDA, 1024, 1.0002)
    assert more - one == pytest.approx(0.001 * 0.0000166667, rel=1e-6)


def test_mlless_function_costs_table_2():
    # seed 002, Table 2: a 2 GB function at 0.000017 $/GB-s is 3.4e-5 $/s.
    assert worker_dollars(price_of("ibm"), 2048, 1.0) == pytest.approx(3.4e-5, rel=1e-12)
    assert price_of("ibm").always_on_per_hour == pytest.approx(0.32)


@pytest.mark.parametrize("platform", ["pods", "knative", "openfaas", "local"])
def test_pods_pay_their_memory_share_of_an_m5_large(platform):
    # a quarter of an m5.large (2 of 8 GB) for an hour: 0.096 / 4 = 0.024 $
    assert worker_dollars(price_of(platform), 2048, 3600.0) == pytest.approx(0.024, rel=1e-12)


def test_rates_agree_with_the_bill_of_a_steady_pool():
    pool = rates(LAMBDA, 2048)
    cost = job_cost(LAMBDA, 2048, {f"w{i}": 100.0 for i in range(5)}, seconds=100.0)
    requests = 5 * LAMBDA.request
    assert pool.at(5) * 100.0 == pytest.approx(cost.total - requests, rel=1e-12)
    assert pool.at(5) - pool.at(4) == pytest.approx(2 * 0.0000166667, rel=1e-12)


def test_sim_is_priced_as_the_platform_it_models():
    assert price_of("sim") == LAMBDA
    assert price_of("sim", models="ibm") == price_of("ibm")
    with pytest.raises(ValueError, match="no prices for platform 'mainframe'"):
        price_of("mainframe")


def test_perf_per_dollar_is_one_over_seconds_times_dollars():
    assert perf_per_dollar(10.0, 0.5) == pytest.approx(0.2)
    assert perf_per_dollar(10.0, 0.0) == math.inf


def test_every_price_says_where_and_when_it_comes_from():
    for price in PRICES.values():
        assert price.source and price.as_of
        assert price.gb_second > 0 and price.always_on_per_hour > 0
