// Package e2e holds the end-to-end tests of the synchronizer: the real
// binary, built once in TestMain from the module root, on real sockets,
// SQLite files, RabbitMQ, Python and the OpenStack test cloud. The tests
// run from the module root, where the examples, testdata and packaging
// they use are, as an operator's checkout has them.
//
// A test that has its own temporary directory, socket, database and
// RabbitMQ names, virtual host or node calls t.Parallel. These run alone:
// the memory and time figures (RSS, stop within a time, get_all
// time-outs), the large snapshots, the connection bursts, the .debs and
// pip, the test cloud, and the tests that set the environment (t.Setenv)
// the binaries they start inherit.
package e2e
