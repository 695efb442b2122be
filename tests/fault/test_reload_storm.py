"""A SIGHUP storm with store changes in between, under a continuous handshake loop: the
healthy bindings never miss a handshake, no process dies, and SIGTERM still ends it all."""

import signal

import cbe2e
import faultlib as fl


def test_sighup_storm_with_store_changes(st, sites, pki):
    c = pki.get("fault-c", "c.test", ["c.test"])
    st.add_cert(c)
    key = "hostnameport=c.test:%d" % sites.port
    srv = fl.serve(st, workers=2, admin=True)
    problems = []
    with sites.loop() as hl:
        assert hl.wait_ok(5, 10 * fl.SLOW), hl.summary()
        bound = False
        for i in range(50):
            srv.signal(signal.SIGHUP)
            if i % 10 == 5:  # a store change every 10 SIGHUPs
                if bound:
                    st.delete(key)
                else:
                    st.add(key, c)
                bound = not bound
        # The last state of c.test is what is served, and the loop goes on.
        want = c.thumb if bound else "alert:TLSV1_UNRECOGNIZED_NAME"
        if not fl.poll_until(lambda: cbe2e.try_thumb("127.0.0.1", sites.port, "c.test") == want,
                             5 * fl.SLOW):
            problems.append("c.test after the storm: %s, expected %s"
                            % (cbe2e.try_thumb("127.0.0.1", sites.port, "c.test"), want))
        if not hl.wait_ok(20, 10 * fl.SLOW):
            problems.append("handshakes did not go on after the storm")
    if hl.failed():
        problems.append("%d failed handshakes to healthy bindings: %s"
                        % (len(hl.failed()), hl.failed()[:5]))
    fl.check_clean_stop(srv, problems, expect_died={})
    fl.verdict(srv, problems, "SIGHUP storm (%s)" % hl.summary())
