"""One size at the defaults on 1 or 2 CPU devices: does the second core pay? (speed_and_scale.md)

    JAXMOE_COMPILATION_CACHE=0 .venv/bin/python experiments/cores_probe.py 1   # then 2
"""
import sys, time, json, jax
import jaxmoe
if sys.argv[1] == "2":
    jaxmoe.use_all_cores()
s = jaxmoe.get_preset("softmax-ridge")
t = time.perf_counter(); fit = jaxmoe.fit_curve(s, [31623], 4, seed=0); w = time.perf_counter() - t
i = fit.info
print(json.dumps(dict(devices=i["devices"], wall=w, compile=i["compile_seconds"], si=i["sample_iterations"],
      executed=i["executed_sample_iterations"],
      ns_core=(w - i["compile_seconds"]) * 1e9 * int(sys.argv[1]) / i["sample_iterations"],
      buckets=[{k: b[k] for k in b if "seconds" in k} for b in i["buckets"]])))
