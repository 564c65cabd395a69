using System.CommandLine;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using DaemonEye.Protocol.Filesystem.V1;
using DaemonEye.Protocol.Network.V1;
using DaemonEye.Protocol.Process.V1;
using DaemonEye.Topics;

namespace DaemonEye.Cli.Commands;

/// <summary>The three loads: execs (procmond), socket closes (netmond), file creates (fsmond).</summary>
internal static partial class BenchCollectorCommand
{
    private static Command BuildProcmond(CliContext context)
    {
        var options = new CommonOptions();
        var exec = new Option<string>("--exec") { Description = "The program each action spawns (no arguments; it should exit at once)", DefaultValueFactory = _ => "/bin/true" };
        var command = new Command("procmond", "Spawn processes (posix_spawn) at a rate; latency from just before each spawn to its STARTED event on events.process.lifecycle, by pid");
        options.AddTo(command);
        command.Options.Add(exec);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var program = parse.GetValue(exec)!;
            if (!File.Exists(program))
            {
                context.Error.WriteLine($"error: --exec {program}: no such file; give the full path of a program that exits at once");
                return CliApplication.Invalid;
            }

            var matcher = new EventMatcher<uint>();
            void OnEvent(in Client.BusDelivery d)
            {
                var at = Stopwatch.GetTimestamp();
                var e = ProcessLifecycle.Parser.ParseFrom(d.Payload);
                if (e.Kind == ProcessLifecycleKind.Started && e.Process is { } p)
                {
                    matcher.Received(p.Pid, at, d.TimestampUnixNanos);
                }
            }

            using var spawner = new Spawner(program);
            return await RunAsync(context, parse, options, "procmond", "execs", WellKnownTopics.ProcessLifecycle, OnEvent, matcher, (settings, ct) => PaceAsync(settings, (_, record) =>
            {
                var at = Stopwatch.GetTimestamp();
                var pid = spawner.Spawn();
                if (pid <= 0)
                {
                    return false;
                }

                matcher.Sent((uint)pid, at, record);
                spawner.Reap(wait: false);
                return true;
            }, ct).ContinueWith(t => { spawner.Reap(wait: true); return t.Result; }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default), cancellationToken);
        }));
        return command;
    }

    private static Command BuildNetmond(CliContext context)
    {
        var options = new CommonOptions();
        var command = new Command("netmond", "Open and close loopback TCP connections at a rate (the client closes first, the accepted end then); latency from just before the accepted end's close to its CLOSED event on events.network.connection, by the client's port");
        options.AddTo(command);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(4096);
            var listenerPort = (uint)((IPEndPoint)listener.LocalEndPoint!).Port;
            var matcher = new EventMatcher<uint>();
            void OnEvent(in Client.BusDelivery d)
            {
                var at = Stopwatch.GetTimestamp();
                var e = ConnectionEvent.Parser.ParseFrom(d.Payload);
                if (e.Kind == ConnectionEventKind.Closed && e.Connection is { } c && c.Local?.Port == listenerPort && c.Remote is { } remote)
                {
                    matcher.Received(remote.Port, at, d.TimestampUnixNanos);
                }
            }

            var buffer = new byte[16];
            return await RunAsync(context, parse, options, "netmond", "connection closes", WellKnownTopics.NetworkConnection, OnEvent, matcher, (settings, ct) => PaceAsync(settings, (_, record) =>
            {
                // The accepted end's close is timed: the peer's FIN is already in, so the kernel
                // frees the socket within that close (LAST_ACK, acknowledged at once on loopback).
                // The client's own socket waits in TIME_WAIT, so its port is not reused in the run.
                using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                client.Connect(IPAddress.Loopback, (int)listenerPort);
                using var accepted = listener.Accept();
                var port = (uint)((IPEndPoint)client.LocalEndPoint!).Port;
                client.Close();
                while (accepted.Receive(buffer) > 0)
                {
                }

                matcher.Sent(port, Stopwatch.GetTimestamp(), record);
                accepted.Close();
                return true;
            }, ct), cancellationToken);
        }));
        return command;
    }

    private static Command BuildFsmond(CliContext context)
    {
        var options = new CommonOptions();
        var directory = new Option<string>("--dir") { Description = "A directory fsmond watches (its --watch globs must cover the files created in it)", Required = true };
        var keep = new Option<bool>("--keep") { Description = "Keep the files (by default each is deleted after its create, which is another event)" };
        var command = new Command("fsmond", "Create files at a rate; latency from just before each create to its CREATED event on events.filesystem.created, by path");
        options.AddTo(command);
        command.Options.Add(directory);
        command.Options.Add(keep);
        command.SetAction((parse, cancellationToken) => AgentConnection.RunAsync(context, async () =>
        {
            var dir = Path.GetFullPath(parse.GetValue(directory)!);
            if (!Directory.Exists(dir))
            {
                context.Error.WriteLine($"error: --dir {dir}: no such directory");
                return CliApplication.Invalid;
            }

            var prefix = Path.Combine(dir, $"bench-{Environment.ProcessId}-");
            var delete = !parse.GetValue(keep);
            var matcher = new EventMatcher<string>();
            void OnEvent(in Client.BusDelivery d)
            {
                var at = Stopwatch.GetTimestamp();
                var e = FileEvent.Parser.ParseFrom(d.Payload);
                if (e.Path.StartsWith(prefix, StringComparison.Ordinal))
                {
                    matcher.Received(e.Path, at, d.TimestampUnixNanos);
                }
            }

            return await RunAsync(context, parse, options, "fsmond", "file creates", "events.filesystem.created", OnEvent, matcher, (settings, ct) => PaceAsync(settings, (i, record) =>
            {
                var path = prefix + i.ToString(System.Globalization.CultureInfo.InvariantCulture);
                matcher.Sent(path, Stopwatch.GetTimestamp(), record);
                File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write).Dispose();
                if (delete)
                {
                    File.Delete(path);
                }

                return true;
            }, ct), cancellationToken);
        }));
        return command;
    }

    /// <summary>posix_spawn of one program with no arguments and an empty environment, and the
    /// reaping of what it spawned (the runtime reaps only the children of Process).</summary>
    private sealed partial class Spawner : IDisposable
    {
        private const int WNOHANG = 1;
        private readonly nint _path;
        private readonly nint _argv;
        private readonly nint _envp;
        private long _children;

        public Spawner(string program)
        {
            _path = Marshal.StringToCoTaskMemUTF8(program);
            _argv = Marshal.AllocHGlobal(2 * nint.Size);
            Marshal.WriteIntPtr(_argv, 0, _path);
            Marshal.WriteIntPtr(_argv, nint.Size, 0);
            _envp = Marshal.AllocHGlobal(nint.Size);
            Marshal.WriteIntPtr(_envp, 0, 0);
        }

        /// <summary>The child's pid, or 0 when the spawn failed.</summary>
        public int Spawn()
        {
            if (posix_spawn(out var pid, _path, 0, 0, _argv, _envp) != 0)
            {
                return 0;
            }

            _children++;
            return pid;
        }

        public void Reap(bool wait)
        {
            while (_children > 0)
            {
                var pid = waitpid(-1, out _, wait ? 0 : WNOHANG);
                if (pid <= 0)
                {
                    return;
                }

                _children--;
            }
        }

        public void Dispose()
        {
            Marshal.FreeCoTaskMem(_path);
            Marshal.FreeHGlobal(_argv);
            Marshal.FreeHGlobal(_envp);
        }

        [LibraryImport("libc", SetLastError = true)]
        private static partial int posix_spawn(out int pid, nint path, nint fileActions, nint attributes, nint argv, nint envp);

        [LibraryImport("libc", SetLastError = true)]
        private static partial int waitpid(int pid, out int status, int options);
    }
}
