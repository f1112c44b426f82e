// Package e2e holds the end-to-end tests of the synchronizer: the real
// binary, built once in TestMain from the module root, on real sockets,
// SQLite files, RabbitMQ, Python and the OpenStack test cloud. The tests
// run from the module root, where the examples, testdata and packaging
// they use are, as an operator's checkout has them.
package e2e
