//! Protocol types shared by the client and the server (see docs/protocol.md).
