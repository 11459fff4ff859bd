// The one translation unit that compiles Asio and Asio SSL (BOOST_ASIO_SEPARATE_COMPILATION):
// every other proxy file includes the headers only.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
