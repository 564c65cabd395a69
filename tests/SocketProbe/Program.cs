// socket-probe ENDPOINT... : tries each endpoint ("unix:/path" or "tcp:127.0.0.1:port") with the three
// protocols of the agent, each on a fresh connection, and prints one line per try:
//   <endpoint> <protocol> accepted|refused <detail>
//   orleans  connect and wait for the silo's connection preamble (an Orleans silo writes its own
//            preamble as soon as it accepts: a 4-byte little-endian length, then at most 1024 bytes
//            naming the cluster); accepted when one arrives
//   bus      send a Hello (ROLE_CLI); accepted when the answer is a Welcome
//   ipc      send an IpcRequest{status}; accepted when the answer is a status without an error
// An answer that is not the protocol's, an error, a close or silence until --patience-ms (default
// 2000) is a refusal. Exit code 0 whatever the verdicts; 2 for a bad command line.
using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using DaemonEye.Protocol;
using DaemonEye.Protocol.Ipc.V1;
using DaemonEye.Protocol.V1;

var patience = TimeSpan.FromSeconds(2);
var endpoints = new List<string>();
foreach (var arg in args)
{
    if (arg.StartsWith("--patience-ms=", StringComparison.Ordinal))
    {
        patience = TimeSpan.FromMilliseconds(int.Parse(arg["--patience-ms=".Length..], CultureInfo.InvariantCulture));
    }
    else if (arg.StartsWith("unix:", StringComparison.Ordinal) || arg.StartsWith("tcp:", StringComparison.Ordinal))
    {
        endpoints.Add(arg);
    }
    else
    {
        Console.Error.WriteLine($"socket-probe: unknown argument '{arg}'; usage: socket-probe [--patience-ms=N] unix:/path|tcp:host:port ...");
        return 2;
    }
}

foreach (var endpoint in endpoints)
{
    foreach (var protocol in new[] { "orleans", "bus", "ipc" })
    {
        var (accepted, detail) = await Probe.TryAsync(endpoint, protocol, patience);
        Console.WriteLine($"{endpoint} {protocol} {(accepted ? "accepted" : "refused")} {detail.ReplaceLineEndings(" ")}");
    }
}

return 0;

internal static class Probe
{
    private const int MaxFrame = 1 << 20;

    public static async Task<(bool Accepted, string Detail)> TryAsync(string endpoint, string protocol, TimeSpan patience)
    {
        using var deadline = new CancellationTokenSource(patience);
        Socket socket;
        try
        {
            socket = await ConnectAsync(endpoint, deadline.Token);
        }
        catch (SocketException e)
        {
            return (false, $"connect failed: {e.SocketErrorCode} ({e.Message})");
        }
        catch (OperationCanceledException)
        {
            return (false, "connect did not complete within the patience");
        }

        using (socket)
        {
            try
            {
                return protocol switch
                {
                    "orleans" => await OrleansAsync(socket, deadline.Token),
                    "bus" => await BusAsync(socket, deadline.Token),
                    _ => await IpcAsync(socket, deadline.Token),
                };
            }
            catch (OperationCanceledException)
            {
                return (false, "no answer within the patience");
            }
            catch (SocketException e)
            {
                return (false, $"connection failed: {e.SocketErrorCode}");
            }
        }
    }

    private static async Task<Socket> ConnectAsync(string endpoint, CancellationToken cancellationToken)
    {
        if (endpoint.StartsWith("unix:", StringComparison.Ordinal))
        {
            var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await unix.ConnectAsync(new UnixDomainSocketEndPoint(endpoint["unix:".Length..]), cancellationToken);
                return unix;
            }
            catch
            {
                unix.Dispose();
                throw;
            }
        }

        var address = IPEndPoint.Parse(endpoint["tcp:".Length..]);
        var tcp = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await tcp.ConnectAsync(address, cancellationToken);
            return tcp;
        }
        catch
        {
            tcp.Dispose();
            throw;
        }
    }

    /// <summary>Waits for an Orleans connection preamble: a little-endian length of 1..1024, then that many bytes.</summary>
    private static async Task<(bool, string)> OrleansAsync(Socket socket, CancellationToken cancellationToken)
    {
        var buffer = new byte[4 + 1024];
        var filled = 0;
        while (true)
        {
            if (filled >= 4)
            {
                var length = BinaryPrimitives.ReadInt32LittleEndian(buffer);
                if (length is < 1 or > 1024)
                {
                    return (false, $"the first bytes are not an Orleans preamble (length {length}): {Printable(buffer.AsSpan(0, filled))}");
                }

                if (filled >= 4 + length)
                {
                    return (true, $"an Orleans preamble of {length} bytes: {Printable(buffer.AsSpan(4, length))}");
                }
            }

            var read = await socket.ReceiveAsync(buffer.AsMemory(filled), cancellationToken);
            if (read == 0)
            {
                return (false, filled == 0 ? "closed without a byte" : $"closed after {filled} bytes: {Printable(buffer.AsSpan(0, filled))}");
            }

            filled += read;
        }
    }

    private static async Task<(bool, string)> BusAsync(Socket socket, CancellationToken cancellationToken)
    {
        var hello = new Envelope
        {
            RequestId = 1,
            Hello = new Hello { ProtocolVersion = (uint)ProtocolVersion._1, ClientId = "socket-probe", Role = Role.Cli, ClientVersion = "socket-probe" },
        };
        var sent = await SendAsync(socket, Framing.ToFrame(hello), cancellationToken);
        var (frame, detail) = await ReadFrameAsync(socket, cancellationToken);
        if (frame is null)
        {
            return (false, sent + detail);
        }

        try
        {
            var answer = Envelope.Parser.ParseFrom(frame);
            return answer is { BodyCase: Envelope.BodyOneofCase.Welcome, Welcome.ConnectionId.Length: > 0 }
                ? (true, $"Welcome, connection {answer.Welcome.ConnectionId}")
                : (false, answer.BodyCase == Envelope.BodyOneofCase.Error ? $"Error {answer.Error.Code}: {answer.Error.Message}" : $"answered {answer.BodyCase}");
        }
        catch (Google.Protobuf.InvalidProtocolBufferException)
        {
            return (false, $"answered a frame that is not an Envelope: {Printable(frame)}");
        }
    }

    private static async Task<(bool, string)> IpcAsync(Socket socket, CancellationToken cancellationToken)
    {
        var sent = await SendAsync(socket, Framing.ToFrame(new IpcRequest { RequestId = 7, Status = new StatusRequest() }), cancellationToken);
        var (frame, detail) = await ReadFrameAsync(socket, cancellationToken);
        if (frame is null)
        {
            return (false, sent + detail);
        }

        try
        {
            var answer = IpcResponse.Parser.ParseFrom(frame);
            if (answer.Error is { } error)
            {
                return (false, $"error {error.Kind}: {error.Message}");
            }

            // The envelopes of the bus and IPC share field numbers: only an answer to this request (its id
            // echoed) that carries a real status counts.
            return answer is { RequestId: 7, BodyCase: IpcResponse.BodyOneofCase.Status, Status.Pid: > 0 }
                ? (true, $"status of agent pid {answer.Status.Pid}")
                : (false, $"answered something else (request id {answer.RequestId}, {answer.BodyCase})");
        }
        catch (Google.Protobuf.InvalidProtocolBufferException)
        {
            return (false, $"answered a frame that is not an IpcResponse: {Printable(frame)}");
        }
    }

    /// <summary>
    /// Sends the request; a peer that refuses at once may have closed already (its one frame waits in
    /// our receive buffer), so a failed send is reported and the answer is read all the same.
    /// </summary>
    private static async Task<string> SendAsync(Socket socket, byte[] frame, CancellationToken cancellationToken)
    {
        try
        {
            await socket.SendAsync(frame, cancellationToken);
            return string.Empty;
        }
        catch (SocketException e)
        {
            return $"send failed ({e.SocketErrorCode}); ";
        }
    }

    /// <summary>One length-prefixed frame (the bus's and IPC's framing), or null and why not.</summary>
    private static async Task<(byte[]? Frame, string Detail)> ReadFrameAsync(Socket socket, CancellationToken cancellationToken)
    {
        var buffer = new byte[64 * 1024];
        var filled = 0;
        while (true)
        {
            var sequence = new ReadOnlySequence<byte>(buffer, 0, filled);
            switch (Framing.TryReadFrame(ref sequence, MaxFrame, out var frame, out var declared))
            {
                case FrameStatus.Complete:
                    return (frame.ToArray(), string.Empty);
                case FrameStatus.TooLarge:
                    return (null, $"answered something that is not a frame (declared length {declared}): {Printable(buffer.AsSpan(0, Math.Min(filled, 64)))}");
            }

            if (filled == buffer.Length)
            {
                Array.Resize(ref buffer, Math.Min(buffer.Length * 2, MaxFrame + 4));
            }

            var read = await socket.ReceiveAsync(buffer.AsMemory(filled), cancellationToken);
            if (read == 0)
            {
                return (null, filled == 0 ? "closed without an answer" : $"closed after {filled} bytes: {Printable(buffer.AsSpan(0, Math.Min(filled, 64)))}");
            }

            filled += read;
        }
    }

    private static string Printable(ReadOnlySpan<byte> bytes)
    {
        var text = new StringBuilder();
        foreach (var b in bytes[..Math.Min(bytes.Length, 64)])
        {
            text.Append(b is >= 0x20 and < 0x7F ? (char)b : '.');
        }

        return text.ToString();
    }
}
