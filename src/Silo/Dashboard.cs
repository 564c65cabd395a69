using System.Net;
using DaemonEye.Configuration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Dashboard;

namespace DaemonEye.Silo;

/// <summary>
/// The optional Orleans dashboard (<c>orleans.dashboard</c> or <c>--dashboard</c>): the agent's host
/// becomes a slim ASP.NET Core application whose only listener is Kestrel on
/// 127.0.0.1:<c>orleans.dashboard_port</c>. Off, the agent is a plain generic host with no HTTP at all.
/// </summary>
internal static partial class Dashboard
{
    public static bool IsEnabled(IConfiguration configuration) =>
        ConfigurationValidator.Bind<OrleansOptions>(configuration, OrleansOptions.SectionName).Dashboard;

    /// <summary>The host builder: a generic host, or with the dashboard a web application bound to loopback.</summary>
    public static IHostApplicationBuilder CreateBuilder(IConfiguration configuration)
    {
        if (!IsEnabled(configuration))
        {
            var generic = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
            generic.Configuration.Sources.Clear();
            generic.Configuration.AddConfiguration(configuration);
            return generic;
        }

        var port = ConfigurationValidator.Bind<OrleansOptions>(configuration, OrleansOptions.SectionName).DashboardPort;
        var web = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        web.Configuration.Sources.Clear();
        web.Configuration.AddConfiguration(configuration);
        web.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, port));
        return web;
    }

    /// <summary>Adds the dashboard's grain-call profiling and counters to the silo when it is on.</summary>
    public static ISiloBuilder AddDashboardIfEnabled(this ISiloBuilder silo, IConfiguration configuration) =>
        IsEnabled(configuration) ? silo.AddDashboard() : silo;

    /// <summary>Maps the dashboard's pages and JSON endpoints at / when the host is the web application.</summary>
    public static void MapIfEnabled(IHost host)
    {
        if (host is WebApplication app)
        {
            app.MapOrleansDashboard();
            var lifetime = app.Services.GetRequiredService<IHostApplicationLifetime>();
            var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(Dashboard).FullName!);
            var address = Address(app.Configuration)!;
            lifetime.ApplicationStarted.Register(() => _ = WarmUpAsync(address, logger, lifetime.ApplicationStopping));
        }
    }

    /// <summary>
    /// The dashboard profiles grain calls only once its own collector grain is active, which the first
    /// request for its counters does; without this, calls made before someone opens the page are not
    /// counted. One request at start-up makes the counters cover the agent's whole run.
    /// </summary>
    private static async Task WarmUpAsync(string address, ILogger logger, CancellationToken cancellationToken)
    {
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
            using var response = await http.GetAsync(new Uri(address + "DashboardCounters"), cancellationToken);
            response.EnsureSuccessStatusCode();
            LogDashboard(logger, address);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            LogWarmUpFailed(logger, address, ex.Message);
        }
    }

    [LoggerMessage(EventId = 10, Level = LogLevel.Information, Message = "Orleans dashboard on {Address} (loopback only)")]
    private static partial void LogDashboard(ILogger logger, string address);

    [LoggerMessage(EventId = 11, Level = LogLevel.Warning, Message = "Orleans dashboard on {Address} did not answer its first request: {Reason}")]
    private static partial void LogWarmUpFailed(ILogger logger, string address, string reason);

    /// <summary>The dashboard's address for the ready line.</summary>
    public static string? Address(IConfiguration configuration) =>
        IsEnabled(configuration) ? $"http://127.0.0.1:{ConfigurationValidator.Bind<OrleansOptions>(configuration, OrleansOptions.SectionName).DashboardPort}/" : null;
}
